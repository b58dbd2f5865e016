"""CIFAR-10: 60,000 colour photos in 10 classes (airplane, automobile, bird, ... truck), 32x32 RGB
(Krizhevsky 2009).

The official "python version" archive, cifar-10-python.tar.gz, verified by the md5 torchvision
publishes (tests/test_download.py checks that they agree). data.source may name a folder holding a
copy of that file, or a mirror URL tried before the official one. 50,000 train and 10,000 test
images, the class names as the archive gives them.
"""

from __future__ import annotations

from collections.abc import Callable

from exigo.core.registry import DATASETS, NoSettings
from exigo.data.download import PublishedFile, PublishedSpec
from exigo.data.raw import RawDataset

SPEC = PublishedSpec(
    name="cifar10",
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    files=(PublishedFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
)


@DATASETS.register(
    "cifar10",
    spec=SPEC,
    source="optional",
    source_help="a mirror URL, or a folder with cifar-10-python.tar.gz",
)
def load(
    settings: NoSettings, source: str | None, log: Callable[[str], None] = print
) -> RawDataset:
    """The archive, verified, as its train and test splits."""
    from exigo.data.download import load_cifar
    from exigo.data.formats import CIFAR10

    return load_cifar(SPEC, CIFAR10, source, log)
