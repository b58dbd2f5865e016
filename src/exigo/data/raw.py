"""What a dataset entry hands the download stage: the official splits as arrays, before any split
of our own (the stage carves the validation split from train)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class RawDataset:
    train_images: np.ndarray  # (N, 28, 28) uint8
    train_labels: np.ndarray  # (N,) class indices
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    files: dict = field(default_factory=dict)  # file name -> what was verified, for meta.json
