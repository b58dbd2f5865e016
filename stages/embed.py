"""Project the network's penultimate features of test images to 2-D, for TensorBoard and DVC.

python -m stages.embed      # reads params.yaml (base.seed, data.name, train.device, embed),
                            # writes logs/ (TensorBoard projector + training scalars),
                            # metrics/embed.json, plots/embed/embedding.csv and images/
"""

from __future__ import annotations

import time
from pathlib import Path

from exigo.data import Split, load_dataset
from exigo.embedding import extract_features, pick_points, project, quality
from exigo.errors import run_stage
from exigo.io import read_csv_numbers, write_csv, write_json
from exigo.metrics import rounded
from exigo.models import load_checkpoint
from exigo.params import load_params
from exigo.plotting import plot_embeddings
from exigo.projector import write_logs
from exigo.utils import resolve_device, set_seed

SPACES = {"learned": "learned features", "untrained": "untrained features", "pixels": "raw pixels"}


def main() -> None:
    params = load_params()
    cfg, seed = params.embed, params.base.seed
    device = resolve_device(params.train.device)
    data = load_dataset(Path("data") / params.data.name)
    model, ckpt = load_checkpoint("models/model.pt", device)
    init, _ = load_checkpoint("models/init.pt", device)
    history = read_csv_numbers("plots/train/history.csv", "train")  # the scalars for logs/
    classes = tuple(ckpt["classes"])
    set_seed(seed)

    idx = pick_points(data.test.labels.numpy(), cfg.n_points, seed)
    split = Split(data.test.images[idx], data.test.labels[idx])
    labels = split.labels.numpy()
    learned, pred = extract_features(model, split, cfg.batch_size, device)
    untrained, _ = extract_features(init, split, cfg.batch_size, device)
    spaces = {
        "learned": learned,
        "untrained": untrained,
        "pixels": split.images.reshape(len(split), -1).float().div(255).numpy(),
    }
    maps, metrics = {}, {}
    for name, x in spaces.items():
        start = time.perf_counter()
        maps[name] = project(x, cfg.method, seed, cfg.perplexity, cfg.pca_dims)
        took = time.perf_counter() - start
        metrics[name] = quality(x, maps[name], labels, cfg.neighbors, cfg.folds, seed)
        m = metrics[name]
        print(
            f"{SPACES[name]:>18} ({x.shape[1]} dims): {cfg.method} {took:.1f} s; trustworthiness "
            f"{m['trustworthiness']:.3f}, k-NN acc 2-D {m['knn_acc_2d']:.3f} / full {m['knn_acc_full']:.3f}, "
            f"silhouette {m['silhouette_2d']:.3f}"
        )
    write_json(Path("metrics/embed.json"), rounded(metrics, 4))

    xy = maps["learned"]
    write_csv(
        Path("plots/embed/embedding.csv"),
        ["x", "y", "class", "predicted", "correct"],
        [
            [f"{x:.3f}", f"{y:.3f}", classes[t], classes[p], int(t == p)]
            for (x, y), t, p in zip(xy, labels, pred, strict=True)
        ],
    )
    subtitles = {
        SPACES[n]: f"k-NN acc {m['knn_acc_2d']:.3f}, trustworthiness {m['trustworthiness']:.3f}"
        for n, m in metrics.items()
    }
    ordered = {SPACES[n]: maps[n] for n in ("pixels", "untrained", "learned")}
    plot_embeddings(ordered, labels, classes, Path("plots/embed/images/embedding.png"), subtitles)

    header = ["label", "class", "predicted", "correct"]
    rows = [
        [str(t), classes[t], classes[p], "yes" if t == p else "no"]
        for t, p in zip(labels, pred, strict=True)
    ]
    write_logs(
        Path("logs"),
        {"learned": learned, "untrained": untrained},
        rows,
        header,
        split.images,
        history,
    )
    print(f"wrote logs/ for the projector: tensorboard --logdir logs ({len(split):,} points)")


if __name__ == "__main__":
    run_stage(main)
