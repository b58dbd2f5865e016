"""A dataset from your own code: `data.name: "my_pkg.my_data:load"`, an import path.

exigo imports `my_pkg.my_data` (from the project root) and calls `load`, passing `source=`
(data.source) and `size=` (data.size, as (H, W) or None) if its signature takes them. It returns a
mapping:

    {"classes": ["cat", "dog", ...],          # class names, in label order
     "train": (images, labels),               # required
     "test": (images, labels),                # optional: else a stratified 20 % is held out
     "val": (images, labels)}                 # optional: else carved from train (data.val_size)

where each split is either a pair (images, labels) or a `torch.utils.data.Dataset` whose items are
(image, label). Images: uint8 in 0..255 or floats in [0, 1], shaped (N, C, H, W) or (N, H, W) as a
numpy array or a torch tensor; a Dataset's images are PIL images or (C, H, W) / (H, W) arrays or
tensors. C is 1 (grey) or 3 (RGB); every image the same size (or give data.size). Labels are
integers 0..K-1.

The module's file is a DVC dependency of `download` through `data.code`, so editing it re-runs
the pipeline.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from exigo.core.errors import ExigoError
from exigo.data.raw import RawDataset

TEST_SIZE = 0.2  # held out as the test split when the loader gives none
TEST_SEED = 0  # fixed: the test split never moves with base.seed


def resolve(name: str) -> Callable[..., Any]:
    """The function an import path names; one line when the module or the name is missing."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ExigoError(
            f"data.name: {name}: no module '{exc.name}' (run from the project root, where "
            f"{module_name.replace('.', '/')}.py lies, or install its package)"
        ) from None
    except Exception as exc:  # the user's module failed while importing: say where
        raise ExigoError(
            f"data.name: {name}: importing {module_name} failed ({type(exc).__name__}: {exc})"
        ) from None
    target = getattr(module, attr, None)
    if not callable(target):
        raise ExigoError(
            f"data.name: {name}: {module_name} has no function '{attr}' "
            f"({'not callable' if hasattr(module, attr) else 'no such name'})"
        )
    return target


def _pixels(images: Any, what: str) -> np.ndarray:
    """uint8 (N, C, H, W) or (N, H, W) from uint8 or [0, 1] float arrays or tensors."""
    if hasattr(images, "detach"):  # a torch tensor
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        if images.size and (images.min() < 0 or images.max() > 1):
            raise ExigoError(
                f"data.name: {what}: float pixels must lie in [0, 1] (got "
                f"{images.min():.3g}..{images.max():.3g}); or give uint8 0..255"
            )
        return np.round(images * 255).astype(np.uint8)
    raise ExigoError(
        f"data.name: {what}: pixels are {images.dtype}; give uint8 or floats in [0, 1]"
    )


def _from_dataset(dataset: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) from a map-style Dataset of (image, label) items."""
    try:
        n = len(dataset)
    except TypeError:
        raise ExigoError(f"data.name: {what}: a Dataset without len(); give arrays") from None
    images, labels = [], []
    for i in range(n):
        item = dataset[i]
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise ExigoError(f"data.name: {what}[{i}]: expected (image, label), got {type(item)}")
        image, label = item
        if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
            image = np.asarray(image.convert("L" if image.mode in ("L", "1", "I") else "RGB"))
            image = image if image.ndim == 2 else image.transpose(2, 0, 1)
        images.append(_pixels(image, f"{what}[{i}]"))
        labels.append(int(label))
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise ExigoError(
            f"data.name: {what}: images of different shapes {sorted(shapes)[:2]}; set data.size"
            " (through your loader's size argument) or give one size"
        )
    if not images:
        raise ExigoError(f"data.name: {what}: empty")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _split(value: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(value, tuple | list) and len(value) == 2:
        images, labels = value
        labels = labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise ExigoError(f"data.name: {what} labels are {labels.dtype}; give integers 0..K-1")
        return _pixels(images, f"{what} images"), labels.astype(np.int64)
    if hasattr(value, "__getitem__") and hasattr(value, "__len__"):
        return _from_dataset(value, what)
    raise ExigoError(
        f"data.name: {what}: expected (images, labels) or a torch Dataset, got {type(value).__name__}"
    )


def load_user(
    name: str, source: str | None, size: tuple[int, int] | None, log: Callable[[str], None] = print
) -> RawDataset:
    """Call the user's loader and check what it returns against the contract above."""
    from exigo.data.splits import stratified_split

    target = resolve(name)
    accepted = inspect.signature(target).parameters
    kwargs = {k: v for k, v in (("source", source), ("size", size)) if k in accepted}
    try:
        out = target(**kwargs)
    except ExigoError:
        raise
    except Exception as exc:  # the user's code failed: one line, where and why
        raise ExigoError(f"data.name: {name} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(out, Mapping) or "train" not in out or "classes" not in out:
        raise ExigoError(
            f"data.name: {name} returned {type(out).__name__}; expected a mapping with 'classes' "
            "and 'train' (and optionally 'test', 'val'): see docs/your-data.md"
        )
    unknown = set(out) - {"classes", "train", "test", "val"}
    if unknown:
        raise ExigoError(f"data.name: {name} returned unknown key(s) {sorted(unknown)}")
    classes = tuple(str(c) for c in out["classes"])
    splits = {k: _split(out[k], f"{name} '{k}'") for k in ("train", "test", "val") if k in out}
    for split, (_, labels) in splits.items():  # before any split is carved from them
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ExigoError(
                f"data.name: {name}: a {split} label is {int(labels.max())}, outside "
                f"0..{len(classes) - 1} for {len(classes)} classes"
            )
    train = splits["train"]
    log(f"{name}: {', '.join(f'{k} {len(v[1]):,}' for k, v in splits.items())} images")
    if "test" not in splits:
        keep, held = stratified_split(train[1], TEST_SIZE, TEST_SEED, f"data.name {name}")
        splits["test"] = (train[0][held], train[1][held])
        splits["train"] = (train[0][keep], train[1][keep])
    val = splits.get("val")
    extra = {"val_images": val[0], "val_labels": val[1]} if val else {}
    return RawDataset(*splits["train"], *splits["test"], classes, **extra)
