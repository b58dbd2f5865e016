"""Project the trained network's penultimate features of test images to 2-D, beside the baselines.

python -m stages.embed      # reads params.yaml (base.seed, data.name, train.device, embed), the
                            # models, and the baseline maps of embed_pixels / embed_untrained;
                            # writes logs/ (TensorBoard projector + training scalars),
                            # metrics/embed.json, metrics/detail/embed.json,
                            # plots/embed/embedding.csv and plots/embed/images/embedding.png
"""

from __future__ import annotations

import time
from pathlib import Path

from exigo.core.errors import ExigoError, run_stage
from exigo.core.outputs import read_json, write_csv, write_json
from exigo.core.params import load_params
from exigo.core.runtime import resolve_device, set_seed, warn
from exigo.data.splits import Split, load_dataset
from exigo.embed.projection import extract_features, map_space, pick_points, read_map
from exigo.embed.tensorboard import projector_name, write_logs
from exigo.evaluate.metrics import rounded
from exigo.models.checkpoint import load_checkpoint
from exigo.models.live import read_history
from exigo.views.figures import plot_embeddings

HEADLINE = ("trustworthiness", "knn_acc_2d", "silhouette_2d")
TITLES = {"pixels": "raw pixels", "untrained": "untrained features", "learned": "learned features"}
TENSORS = {  # the projector's tensor names
    "learned": "learned features (trained model)",
    "untrained": "untrained features (initial weights)",
}


def main() -> None:
    params = load_params()
    cfg, seed = params.embed, params.base.seed
    device = resolve_device(params.train.device)
    data = load_dataset(Path("data") / params.data.name)
    model, ckpt = load_checkpoint("models/model.pt", device)
    init, _ = load_checkpoint("models/init.pt", device)
    history = read_history()  # the per-epoch scalars for logs/
    baselines = {
        s: (
            read_map(f"plots/embed/baselines/{s}.csv", f"embed_{s}"),
            read_json(f"metrics/detail/embed_{s}.json", f"embed_{s}"),
        )
        for s in ("pixels", "untrained")
    }
    classes = tuple(ckpt["classes"])
    set_seed(seed)

    idx = pick_points(data.test.labels.numpy(), cfg.n_points, seed)
    split = Split(data.test.images[idx], data.test.labels[idx])
    labels = split.labels.numpy()
    if any(len(xy) != len(labels) for xy, _ in baselines.values()):
        raise ExigoError(
            "plots/embed/baselines/: maps of another set of test images; "
            "run dvc repro embed_pixels embed_untrained again"
        )
    learned, pred = extract_features(model, split, cfg.batch_size, device)
    untrained, _ = extract_features(init, split, cfg.batch_size, device)
    start = time.perf_counter()
    xy, quality = map_space(
        learned, labels, cfg.method, cfg.settings, seed, cfg.neighbors, cfg.folds
    )
    took = time.perf_counter() - start
    if quality["trustworthiness"] is None:
        warn("embed: the learned features are the same for every test image: no map")
    else:
        print(
            f"learned features ({learned.shape[1]} dims): {cfg.method} and scores {took:.1f} s; "
            f"trustworthiness {quality['trustworthiness']:.3f}, k-NN acc 2-D "
            f"{quality['knn_acc_2d']:.3f} / full {quality['knn_acc_full']:.3f}, "
            f"silhouette {quality['silhouette_2d']:.3f}"
        )
    maps = {"pixels": baselines["pixels"][0], "untrained": baselines["untrained"][0], "learned": xy}
    metrics = {"learned": quality, **{s: m for s, (_, m) in baselines.items()}}
    # DVC tracks how good the learned map is; the baselines and full-space numbers are detail.
    write_json(Path("metrics/embed.json"), rounded({k: quality[k] for k in HEADLINE}, 4))
    write_json(Path("metrics/detail/embed.json"), rounded(metrics, 4))

    write_csv(
        Path("plots/embed/embedding.csv"),
        ["x", "y", "class", "predicted", "correct", "label"],
        [
            [f"{x:.3f}", f"{y:.3f}", classes[t], classes[p], int(t == p), int(t)]
            for (x, y), t, p in zip(xy, labels, pred, strict=True)
        ],
    )

    def subtitle(m: dict) -> str:
        if m.get("trustworthiness") is None:
            return "constant features: no map"
        return f"k-NN acc {m['knn_acc_2d']:.3f}, trustworthiness {m['trustworthiness']:.3f}"

    plot_embeddings(
        {TITLES[s]: maps[s] for s in ("pixels", "untrained", "learned")},
        labels,
        classes,
        Path("plots/embed/images/embedding.png"),
        {TITLES[s]: subtitle(metrics[s]) for s in maps},
    )

    # TensorBoard's projector labels points by the first column that is not numeric, and colours
    # categorically only by non-numeric columns: so a "true → predicted" label first, and class
    # names that never read as numbers ("class 3"); `label` keeps the index for more than 50.
    header = ["point", "class", "predicted", "correct", "label"]
    names = [projector_name(c) for c in classes]
    rows = [
        [f"{classes[t]} → {classes[p]}", names[t], names[p], "yes" if t == p else "no", str(t)]
        for t, p in zip(labels, pred, strict=True)
    ]
    write_logs(
        Path("logs"),
        {TENSORS["learned"]: learned, TENSORS["untrained"]: untrained},
        rows,
        header,
        split.images,
        history,
    )
    print(f"wrote logs/ for the projector: tensorboard --logdir logs ({len(split):,} points)")


if __name__ == "__main__":
    run_stage(main)
