"""Download (or read offline) the dataset and write its train/val/test splits as tensors.

python -m stages.download          # reads params.yaml (base, data), writes data/<name>/
"""

from __future__ import annotations

from pathlib import Path

from exigo.core.errors import run_stage
from exigo.core.params import load_params
from exigo.core.registry import DATASETS
from exigo.data.splits import build_splits, describe, save_dataset


def main() -> None:
    params = load_params()
    cfg = params.data
    out_dir = Path("data") / cfg.name
    raw = DATASETS.get(cfg.name).target(cfg.settings, cfg.source)
    arrays = (raw.train_images, raw.train_labels, raw.test_images, raw.test_labels)
    splits = build_splits(*arrays, val_size=cfg.val_size, seed=params.base.seed)
    meta = describe(splits, raw.classes)
    meta["split"] = {"val_size": cfg.val_size, "seed": params.base.seed}
    if raw.files:
        meta["files"] = raw.files
    save_dataset(out_dir, cfg.name, splits, meta)
    sizes = ", ".join(f"{k} {v:,}" for k, v in meta["sizes"].items())
    print(f"wrote {out_dir}/: {sizes} images, {len(raw.classes)} classes")


if __name__ == "__main__":
    run_stage(main)
