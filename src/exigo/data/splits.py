"""Dataset splits as uint8/int64 tensors: built once by the download stage, loaded whole in memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from exigo.core.errors import ExigoError
from exigo.core.outputs import load_torch, read_json, require, save_torch, unreadable, write_json

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, C, H, W) uint8, C = 1 or 3
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    meta: dict


def stratified_split(
    labels: np.ndarray, size: float | int, seed: int, key: str = "data.val_size"
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out), held_out stratified by label; `size` is a fraction or a count
    (`key`: the param that gave it, for the error)."""
    from sklearn.model_selection import train_test_split

    size = int(size) if size >= 1 else float(size)
    try:
        keep, held = train_test_split(
            np.arange(len(labels)), test_size=size, stratify=labels, random_state=seed
        )
    except ValueError as exc:
        raise ExigoError(f"{key}: cannot split {len(labels)} images that way ({exc})") from None
    return np.sort(keep), np.sort(held)


def build_splits(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    val_size: float | int,
    seed: int,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Split]:
    """Carve the validation split from train (stratified, seeded), unless the dataset has a
    validation split of its own (`val`: images, labels); the test split is untouched."""

    def split(images: np.ndarray, labels: np.ndarray) -> Split:
        # np.array copies: IDX arrays are read-only views of the downloaded bytes, and
        # torch.from_numpy warns about (and would alias) a read-only array.
        return Split(
            torch.from_numpy(np.array(images, dtype=np.uint8, order="C")),
            torch.from_numpy(np.array(labels, dtype=np.int64)),
        )

    if val is not None:
        return {
            "train": split(train_images, train_labels),
            "val": split(*val),
            "test": split(test_images, test_labels),
        }
    keep, held = stratified_split(train_labels, val_size, seed)
    return {
        "train": split(train_images[keep], train_labels[keep]),
        "val": split(train_images[held], train_labels[held]),
        "test": split(test_images, test_labels),
    }


def describe(splits: dict[str, Split], classes: tuple[str, ...]) -> dict:
    """Counts per class, sizes, the train split's pixel statistics, per-split checksums."""
    import hashlib

    train = splits["train"].images
    channels = train.shape[1]
    # Per-channel statistics in float64 chunks: exact for any number of images, and no float
    # copy of the whole split in memory (a 224x224 RGB set is large).
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(train), 4096):
        chunk = train[start : start + 4096].double().div_(255)
        total += chunk.sum((0, 2, 3))
        squares += chunk.square().sum((0, 2, 3))
    pixels = train.numel() / channels
    mean = total / pixels
    std = ((squares - pixels * mean.square()) / max(pixels - 1, 1)).clamp_(min=0).sqrt()
    counts = {
        name: {
            c: int(n)
            for c, n in zip(classes, torch.bincount(s.labels, minlength=len(classes)), strict=True)
        }
        for name, s in splits.items()
    }
    digests = {
        name: hashlib.sha256(s.images.numpy().tobytes() + s.labels.numpy().tobytes()).hexdigest()
        for name, s in splits.items()
    }
    return {
        "classes": list(classes),
        "shape": list(train.shape[1:]),  # (C, H, W) of every image
        "sizes": {name: len(s) for name, s in splits.items()},
        "counts": counts,
        "normalization": {  # per channel, of the train split's pixels in [0, 1]
            "mean": [round(float(v), 6) for v in mean],
            "std": [round(float(v), 6) for v in std],
        },
        "sha256": digests,
    }


def save_dataset(out_dir: Path, name: str, splits: dict[str, Split], meta: dict) -> None:
    """Write train.pt, val.pt, test.pt and meta.json into out_dir, each atomically."""
    for split_name, split in splits.items():
        save_torch(out_dir / f"{split_name}.pt", {"images": split.images, "labels": split.labels})
    write_json(out_dir / "meta.json", {"dataset": name, **meta})


def load_dataset(data_dir: Path | str) -> Dataset:
    """Load what the download stage wrote (weights_only: plain tensors, nothing executable).

    A damaged or inconsistent file is one `unreadable ...; run dvc repro download again` line."""
    data_dir = Path(data_dir)
    meta_path = data_dir / "meta.json"
    meta = read_json(meta_path, "download")
    require(
        meta,
        ("dataset", "classes", "normalization.mean", "normalization.std"),
        meta_path,
        "download",
    )
    classes = meta["classes"]
    if not isinstance(classes, list) or len(classes) < 2:
        raise unreadable(meta_path, "'classes' is not a list of class names", "download")
    shape = meta.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3 and shape[0] in (1, 3)):
        raise unreadable(meta_path, "no 'shape' [C, H, W] (an older exigo wrote it)", "download")
    splits = {name: _load_split(data_dir / f"{name}.pt", len(classes), shape) for name in SPLITS}
    return Dataset(meta["dataset"], tuple(classes), meta=meta, **splits)


def _load_split(path: Path, n_classes: int, shape: list[int]) -> Split:
    blob = load_torch(path, "download")
    images = blob.get("images") if isinstance(blob, dict) else None
    labels = blob.get("labels") if isinstance(blob, dict) else None
    if not (torch.is_tensor(images) and torch.is_tensor(labels)):
        raise unreadable(path, "no 'images' and 'labels' tensors", "download")
    if images.dtype != torch.uint8 or list(images.shape[1:]) != shape or images.ndim != 4:
        raise unreadable(
            path,
            f"images are {images.dtype} {tuple(images.shape)}, not uint8 (N, {', '.join(map(str, shape))})",
            "download",
        )
    if labels.dtype != torch.int64 or labels.shape != (len(images),):
        raise unreadable(
            path,
            f"{tuple(labels.shape)} {labels.dtype} labels for {len(images)} images",
            "download",
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise unreadable(path, f"labels outside 0..{n_classes - 1}", "download")
    return Split(images, labels)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float (B, C, H, W) in [0, 1]: what every model takes."""
    return images.float().div_(255)


def batches(
    split: Split, batch_size: int, device: torch.device, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (inputs, labels) on `device` straight from the in-memory tensors (shuffled if a
    generator is given): no per-item Dataset, no PIL, no worker processes."""
    images = split.images.to(device, non_blocking=True)
    labels = split.labels.to(device, non_blocking=True)
    n = len(labels)
    order = torch.randperm(n, generator=generator).to(device) if generator is not None else None
    for start in range(0, n, batch_size):
        idx = (
            order[start : start + batch_size]
            if order is not None
            else slice(start, start + batch_size)
        )
        yield to_input(images[idx]), labels[idx]
