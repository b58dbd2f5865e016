"""What a dataset entry hands the download stage: the official splits as arrays, before any split
of our own (the stage carves the validation split from train).

Images are uint8 (N, C, H, W) with C = 1 (grey) or 3 (RGB); an entry may hand grey images as
(N, H, W), and they get their channel axis here. Any size from 8x8 up, 2 to 1,000 classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exigo.core.errors import ExigoError

if TYPE_CHECKING:
    import numpy as np

MIN_SIDE = 8  # the smallest image side the models, saliency and figures work with
MAX_CLASSES = 1000


@dataclass(frozen=True)
class RawDataset:
    train_images: np.ndarray  # (N, C, H, W) uint8 (grey may come as (N, H, W))
    train_labels: np.ndarray  # (N,) class indices
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    files: dict = field(default_factory=dict)  # file name -> what was verified, for meta.json
    val_images: np.ndarray | None = None  # a validation split of its own (else carved from train)
    val_labels: np.ndarray | None = None
    tree: dict | None = None  # a local folder read whole: {"path", "sha256"}, to notice a change

    def __post_init__(self) -> None:
        for name in ("train_images", "test_images", "val_images"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, as_nchw(getattr(self, name), name))
        check_arrays(self)


def as_nchw(images: np.ndarray, what: str) -> np.ndarray:
    """(N, H, W) -> (N, 1, H, W); (N, C, H, W) as is; anything else is refused."""
    import numpy as np

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ExigoError(
            f"dataset: {what} are {tuple(images.shape)}; expected (N, C, H, W) with C = 1 (grey)"
            " or 3 (RGB), or grey (N, H, W)"
        )
    if images.dtype != np.uint8:
        raise ExigoError(f"dataset: {what} are {images.dtype}; expected uint8 pixels 0..255")
    return images


def check_arrays(raw: RawDataset) -> None:
    """Shapes agree, images are large enough, labels are in range: one line otherwise."""
    import numpy as np

    n_classes = len(raw.classes)
    if not 2 <= n_classes <= MAX_CLASSES:
        raise ExigoError(f"dataset: {n_classes} classes; exigo takes 2 to {MAX_CLASSES:,}")
    if len(set(raw.classes)) != n_classes:
        raise ExigoError(f"dataset: class names repeat ({', '.join(raw.classes[:20])})")
    train = raw.train_images.shape
    for name in ("test", "val"):
        other = getattr(raw, f"{name}_images")
        if other is not None and other.shape[1:] != train[1:]:
            raise ExigoError(
                f"dataset: train images are {train[1:]} but {name} images {other.shape[1:]}"
                " (C, H, W)"
            )
    if min(train[2:]) < MIN_SIDE:
        raise ExigoError(
            f"dataset: images are {train[3]}x{train[2]}; at least {MIN_SIDE}x{MIN_SIDE}"
            " (data.size resizes a folder's images)"
        )
    for split, images, labels in (
        ("train", raw.train_images, raw.train_labels),
        ("test", raw.test_images, raw.test_labels),
        ("val", raw.val_images, raw.val_labels),
    ):
        if images is None:
            continue
        labels = np.asarray(labels)
        if labels.shape != (len(images),):
            raise ExigoError(
                f"dataset: {len(images):,} {split} images but labels of shape {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
            raise ExigoError(
                f"dataset: a {split} label is {int(labels.max())}, outside 0..{n_classes - 1}"
                f" for {n_classes} classes"
            )
