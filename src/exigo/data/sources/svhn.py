"""SVHN: 99,289 house-number digits 0-9 cropped from Street View, 32x32 RGB (Netzer et al. 2011).

The official train_32x32.mat (73,257 digits) and test_32x32.mat (26,032), verified by the md5s
torchvision publishes (tests/test_download.py checks that they agree); the 531,131 "extra" digits
are not used. data.source may name a folder holding copies of the two files, or a mirror URL tried
before the official one. The files label the digit 0 as 10; here it is class 0.
"""

from __future__ import annotations

from collections.abc import Callable

from exigo.core.registry import DATASETS, NoSettings
from exigo.data.download import PublishedFile, PublishedSpec
from exigo.data.raw import RawDataset

SPEC = PublishedSpec(
    name="svhn",
    mirrors=("http://ufldl.stanford.edu/housenumbers/",),
    files=(  # train, then test
        PublishedFile("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
        PublishedFile("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    ),
)


@DATASETS.register(
    "svhn",
    spec=SPEC,
    source="optional",
    source_help="a mirror URL, or a folder with train_32x32.mat and test_32x32.mat",
)
def load(
    settings: NoSettings, source: str | None, log: Callable[[str], None] = print
) -> RawDataset:
    """The two files, verified, as the train and test splits."""
    from exigo.data.download import load_svhn

    return load_svhn(SPEC, source, log)
