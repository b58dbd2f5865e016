"""Download (or read offline) the dataset and write its train/val/test splits as tensors.

python -m stages.download          # reads params.yaml (base, data), writes data/<name>/
"""

from __future__ import annotations

import inspect
from pathlib import Path

from exigo.core.errors import run_stage
from exigo.core.params import is_import_path, load_params
from exigo.core.registry import DATASETS
from exigo.data.formats import resize
from exigo.data.raw import RawDataset
from exigo.data.splits import build_splits, describe, save_dataset
from exigo.data.user import load_user


def read(cfg) -> RawDataset:
    """The dataset data.name names: a registered one, or the user's loader (an import path)."""
    size = tuple(cfg.size) if cfg.size else None
    if is_import_path(cfg.name):
        return load_user(cfg.name, cfg.source, size)
    target = DATASETS.get(cfg.name).target
    if "size" in inspect.signature(target).parameters:  # reads images of any size (a folder)
        return target(cfg.settings, cfg.source, size=size)
    return target(cfg.settings, cfg.source)


def main() -> None:
    params = load_params()
    cfg = params.data
    out_dir = Path("data") / cfg.name
    raw = read(cfg)
    train, test, val = raw.train_images, raw.test_images, raw.val_images
    if cfg.size:  # one size for every image (a no-op where they have it already)
        train, test = resize(train, cfg.size), resize(test, cfg.size)
        val = resize(val, cfg.size) if val is not None else None
    own_val = (val, raw.val_labels) if val is not None else None
    splits = build_splits(
        train, raw.train_labels, test, raw.test_labels, cfg.val_size, params.base.seed, own_val
    )
    meta = describe(splits, raw.classes)
    meta["split"] = {
        "val_size": cfg.val_size if own_val is None else "own",
        "seed": params.base.seed,
    }
    if raw.files:
        meta["files"] = raw.files
    if raw.tree:
        meta["tree"] = raw.tree
    save_dataset(out_dir, cfg.name, splits, meta)
    sizes = ", ".join(f"{k} {v:,}" for k, v in meta["sizes"].items())
    c, h, w = meta["shape"]
    print(f"wrote {out_dir}/: {sizes} images of {c}x{h}x{w}, {len(raw.classes)} classes")


if __name__ == "__main__":
    run_stage(main)
