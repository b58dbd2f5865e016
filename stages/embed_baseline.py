"""A baseline 2-D map for the embed stage: raw pixels, or the untrained model's features.

python -m stages.embed_baseline pixels      # reads data/ only
python -m stages.embed_baseline untrained   # reads data/ and models/init.pt

Each is its own DVC stage with its true dependencies, so an experiment that changes only a
`train` param (which leaves models/init.pt as it was) reuses both maps instead of recomputing them.
Writes plots/embed/baselines/<space>.csv (the map) and metrics/detail/embed_<space>.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from exigo.core.errors import ExigoError, run_stage
from exigo.core.outputs import write_csv, write_json
from exigo.core.params import load_params
from exigo.core.runtime import resolve_device, set_seed, warn
from exigo.data.splits import Split, load_dataset
from exigo.embed.projection import extract_features, map_space, pick_points
from exigo.evaluate.metrics import rounded
from exigo.models.checkpoint import load_checkpoint

SPACES = {"pixels": "raw pixels", "untrained": "untrained model's features"}


def main() -> None:
    space = sys.argv[1] if len(sys.argv) == 2 else ""
    if space not in SPACES:
        raise ExigoError(f"usage: python -m stages.embed_baseline {{{'|'.join(SPACES)}}}")
    params = load_params()
    cfg, seed = params.embed, params.base.seed
    test = load_dataset(Path("data") / params.data.name).test
    set_seed(seed)
    idx = pick_points(test.labels.numpy(), cfg.n_points, seed)
    split = Split(test.images[idx], test.labels[idx])
    if space == "pixels":
        x = split.images.reshape(len(split), -1).float().div(255).numpy()
    else:
        device = resolve_device(params.train.device)
        init, _ = load_checkpoint("models/init.pt", device)
        x, _ = extract_features(init, split, cfg.batch_size, device)
    labels = split.labels.numpy()
    xy, quality = map_space(x, labels, cfg.method, cfg.settings, seed, cfg.neighbors, cfg.folds)
    if quality["trustworthiness"] is None:
        warn(f"embed: the {SPACES[space]} are the same for every test image: no map")
    write_csv(
        Path(f"plots/embed/baselines/{space}.csv"),
        ["x", "y", "label"],
        [[f"{a:.4f}", f"{b:.4f}", int(t)] for (a, b), t in zip(xy, labels, strict=True)],
    )
    write_json(Path(f"metrics/detail/embed_{space}.json"), rounded(quality, 4))
    print(f"{SPACES[space]} ({x.shape[1]} dims), {len(x):,} test images: {rounded(quality, 3)}")


if __name__ == "__main__":
    run_stage(main)
