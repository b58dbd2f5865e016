"""CIFAR-100: 60,000 colour photos in 100 fine classes (apple, aquarium_fish, ... worm), 32x32 RGB
(Krizhevsky 2009).

The official "python version" archive, cifar-100-python.tar.gz, verified by the md5 torchvision
publishes (tests/test_download.py checks that they agree). data.source may name a folder holding a
copy of that file, or a mirror URL tried before the official one. The 100 fine labels are the
classes (the 20 coarse superclasses are not used); 50,000 train and 10,000 test images.
"""

from __future__ import annotations

from collections.abc import Callable

from exigo.core.registry import DATASETS, NoSettings
from exigo.data.download import PublishedFile, PublishedSpec
from exigo.data.raw import RawDataset

SPEC = PublishedSpec(
    name="cifar100",
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    files=(PublishedFile("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),),
)


@DATASETS.register(
    "cifar100",
    spec=SPEC,
    source="optional",
    source_help="a mirror URL, or a folder with cifar-100-python.tar.gz",
)
def load(
    settings: NoSettings, source: str | None, log: Callable[[str], None] = print
) -> RawDataset:
    """The archive, verified, as its train and test splits with the fine labels."""
    from exigo.data.download import load_cifar
    from exigo.data.formats import CIFAR100

    return load_cifar(SPEC, CIFAR100, source, log)
