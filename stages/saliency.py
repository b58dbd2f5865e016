"""Where the network looks, and whether the maps mean anything.

python -m stages.saliency   # reads params.yaml (base.seed, data.name, train.device, saliency),
                            # models/{model,init}.pt and metrics/detail/evaluate.json;
                            # writes metrics/saliency.json (headline), metrics/detail/
                            # saliency.json, plots/saliency/{deletion,insertion}.csv, images/
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from exigo.core.errors import run_stage
from exigo.core.outputs import read_json, require, unreadable, write_csv, write_json
from exigo.core.params import load_params
from exigo.core.runtime import resolve_device, set_seed
from exigo.data.splits import load_dataset, to_input
from exigo.evaluate.metrics import rounded
from exigo.explain.faithfulness import (
    RANDOM,
    attribute,
    class_means,
    confused_pair_maps,
    curve_table,
    eval_subset,
    evaluate_maps,
    fused_copy,
    gradient_rows,
    logits,
    select_images,
)
from exigo.explain.figures import plot_before_after, plot_methods, plot_pairs
from exigo.models.checkpoint import load_checkpoint

PLOTS = Path("plots/saliency")
IMAGES = PLOTS / "images"
EVALUATION = Path("metrics/detail/evaluate.json")  # the most-confused pairs


def confused_pairs(path: Path, n_pairs: int, n_classes: int) -> list[tuple[int, int]]:
    """The most-confused (true, predicted) class pairs that evaluate recorded (fewer when the
    model confuses fewer); a file missing them, or naming no class, is one clear line."""
    evaluation = read_json(path, "evaluate")
    require(evaluation, ["confused"], path, "evaluate")
    confused = evaluation["confused"]
    if not isinstance(confused, dict):
        raise unreadable(path, "'confused' is not a mapping", "evaluate")
    ranks = [f"top{i}" for i in range(1, n_pairs + 1) if f"top{i}" in confused]
    require(
        evaluation,
        [f"confused.{r}.{k}" for r in ranks for k in ("true", "predicted")],
        path,
        "evaluate",
    )
    pairs = [(confused[r]["true"], confused[r]["predicted"]) for r in ranks]
    for rank, pair in zip(ranks, pairs, strict=True):
        if not all(isinstance(c, int) and 0 <= c < n_classes for c in pair):
            raise unreadable(
                path, f"confused.{rank} names no class of 0..{n_classes - 1}", "evaluate"
            )
    return pairs


def main() -> None:
    params = load_params()
    cfg, seed = params.saliency, params.base.seed
    set_seed(seed)
    device = resolve_device(params.train.device)
    data = load_dataset(Path("data") / params.data.name)
    test = data.test
    # deletion and insertion put the dataset's mean colour where pixels are taken away
    mean_colour = torch.tensor(data.meta["normalization"]["mean"], dtype=torch.float32)
    model, ckpt = load_checkpoint("models/model.pt", device)
    untrained, _ = load_checkpoint("models/init.pt", device)
    for m in (model, untrained):  # channels_last: faster convs on the CPU and CUDA, as in training
        m.to(memory_format=torch.channels_last)
    classes = tuple(ckpt["classes"])
    pairs = confused_pairs(EVALUATION, cfg.n_pairs, len(classes))
    start = time.perf_counter()
    fast = fused_copy(model)  # batch norm folded into the convs: same outputs, faster

    # The original figure, done right (one image per class, before and after training), and the
    # same images under every method.
    chosen = select_images(test.labels, cfg.n_images, len(classes), seed)
    x = to_input(test.images[chosen])
    predicted = logits(fast, test.images[chosen], cfg.batch_size).argmax(1)
    guessed = logits(untrained, test.images[chosen], cfg.batch_size).argmax(1)
    target = test.labels[chosen] if cfg.target == "true" else predicted

    def labelled(pred: torch.Tensor) -> list[str]:
        return [
            f"{classes[t]} (pred. {classes[p]})"
            for t, p in zip(test.labels[chosen], pred, strict=True)
        ]

    plot_before_after(
        gradient_rows(untrained, x, target, cfg),
        gradient_rows(model, x, target, cfg),
        labelled(guessed),  # each half names its own model's prediction
        labelled(predicted),
        IMAGES / "gradient.png",
        f"Gradient of the {cfg.target}-class logit, before and after training",
    )
    columns = labelled(predicted)
    maps = {m: attribute(model, x, target, m, cfg, seed) for m in cfg.methods}
    plot_methods(x, maps, columns, IMAGES / "methods.png", f"Maps for the {cfg.target} class")

    # The numbers, over a seeded subset of the test split; these maps explain the predicted class.
    subset = eval_subset(len(test), cfg.n_eval, seed)
    predicted = logits(fast, test.images[subset], cfg.batch_size).argmax(1)
    result = evaluate_maps(model, to_input(test.images[subset]), predicted, cfg, seed, mean_colour)
    labels = test.labels[subset]
    correct = result.predicted == labels
    per_class = torch.bincount(labels[correct], minlength=len(classes))
    plot_methods(
        class_means({"x": to_input(test.images[subset])}, correct, labels, len(classes))["x"],
        class_means(result.maps, correct, labels, len(classes)),
        [
            f"{c}\n({int(n)})" if n else f"{c}\n(none right)"
            for c, n in zip(classes, per_class, strict=True)
        ],
        IMAGES / "class_means.png",
        f"Mean map per class over {int(correct.sum()):,} correctly classified test images",
        source_label="mean image",
        absent=[c for c, n in enumerate(per_class.tolist()) if n == 0],
    )

    # The most-confused pairs (from evaluate): maps for the true and for the predicted class.
    if found := confused_pair_maps(fast, test.images, test.labels, pairs, cfg, seed):
        plot_pairs(
            to_input(test.images[found.index]),
            found.true_maps,
            found.predicted_maps,
            [
                f"{classes[t]} taken for {classes[p]}"
                for t, p in zip(found.true, found.predicted, strict=True)
            ],
            IMAGES / "confused_pairs.png",
            "Most-confused pairs: maps for\nthe true and the predicted class",
        )

    write_csv(PLOTS / "deletion.csv", *curve_table(result.deletion, cfg.methods, result.fractions))
    write_csv(
        PLOTS / "insertion.csv", *curve_table(result.insertion, cfg.methods, result.fractions)
    )
    metrics = rounded(result.metrics(cfg.flag_correlation))
    write_json(Path("metrics/detail/saliency.json"), metrics)  # every method, every block
    write_json(Path("metrics/saliency.json"), rounded(result.headline(cfg.flag_correlation)))

    print(f"saliency: {len(subset):,} test images in {time.perf_counter() - start:.1f} s")
    print(f"  {'method':<22}{'deletion AUC':>14}{'insertion AUC':>15}{'randomised rho':>16}")
    for m in (*cfg.methods, RANDOM):
        rho = metrics["randomization_spearman"].get(m)
        flag = (
            "  flagged: the map barely depends on the weights"
            if metrics["randomization_flagged"].get(m)
            else ""
        )
        numbers = (metrics["deletion_auc"][m], metrics["insertion_auc"][m], rho)
        print(
            f"  {m:<22}"
            + "".join(
                f"{'—' if v is None else f'{v:.3f}':>{w}}"
                for v, w in zip(numbers, (14, 15, 16), strict=True)
            )
            + flag
        )


if __name__ == "__main__":
    run_stage(main)
