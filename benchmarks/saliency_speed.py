"""Saliency metrics speed: exigo's batched computation against a one-image-at-a-time baseline.

Same model, same images, same process, default `saliency` params. The batched path is what the
stage runs (exigo.explain.faithfulness.evaluate_maps: every method's maps, deletion/insertion curves for each
method and a random order, the cascading randomisation check). The baseline does the same work the
plain way: one image per call to Captum, and one forward pass per image and per curve step.

    python benchmarks/saliency_speed.py                    # a model trained for 1 epoch here
    python benchmarks/saliency_speed.py --checkpoint models/model.pt --baseline-images 40

Prints images/s for each path and the ratio (absolute numbers depend on the machine and its load;
the ratio is the figure to compare).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from exigo.core.outputs import write_json
from exigo.core.params import ModelParams, SaliencyParams, TrainParams
from exigo.core.runtime import resolve_device, set_seed
from exigo.data.sources.mnist_sample import load_mnist_sample
from exigo.data.splits import Split, to_input
from exigo.explain.faithfulness import (
    RANDOM,
    attribute,
    cascade_layers,
    evaluate_maps,
    fractions,
    pixel_order,
    ranking_score,
    reinitialize,
    spearman_rows,
)
from exigo.models.checkpoint import build_model, load_checkpoint
from exigo.models.training import fit


def trained_model(images: torch.Tensor, labels: torch.Tensor, device: torch.device):
    """The default model after one epoch on the first 4,000 digits (enough for real maps)."""
    set_seed(0)
    model = build_model("cnn", ModelParams().settings, 10, 0.1307, 0.3081)
    fit(
        model,
        Split(images[:4000], labels[:4000]),
        Split(images[4000:4200], labels[4000:4200]),
        TrainParams(epochs=1),
        seed=0,
        device=device,
    )
    return model.eval()


@torch.no_grad()
def curve_one_by_one(model, x, cls, order, steps) -> None:
    """Deletion and insertion for one image: one forward pass per step, every step."""
    for f in fractions(steps):
        k = round(f * order.numel())
        for keep in (order[k:], order[:k]):  # deletion keeps the rest, insertion the first k
            shown = torch.zeros(order.numel(), dtype=torch.bool)
            shown[keep] = True
            model((x.reshape(-1) * shown).reshape(1, 1, 28, 28)).softmax(1)[0, cls]


def one_by_one(model, x: torch.Tensor, cfg: SaliencyParams, seed: int) -> float:
    """Seconds for the stage's metrics on x, one image at a time."""
    gen = torch.Generator().manual_seed(seed)
    one = cfg.model_copy(update={"batch_size": 1})
    start = time.perf_counter()
    for i in range(len(x)):
        xi = x[i : i + 1]
        with torch.no_grad():
            cls = model(xi).argmax(1)
        orders = {}
        for m in cfg.methods:
            maps = attribute(model, xi, cls, m, one, seed)
            orders[m] = pixel_order(ranking_score(maps, m), 1, 784, gen)[0]
            if i < cfg.n_randomization:
                randomized = copy.deepcopy(model)
                for layer in cascade_layers(randomized):
                    reinitialize(randomized.get_submodule(layer))
                    spearman_rows(maps, attribute(randomized, xi, cls, m, one, seed))
        orders[RANDOM] = pixel_order(None, 1, 784, gen)[0]
        for order in orders.values():
            curve_one_by_one(model, xi, int(cls), order, cfg.deletion_steps)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint", help="an exigo checkpoint (default: train one epoch here)")
    ap.add_argument("--baseline-images", type=int, default=100, help="images for the slow path")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    device = resolve_device(args.device)
    cfg, seed = SaliencyParams(), 0
    images, labels = (torch.from_numpy(a) for a in load_mnist_sample())
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint, device)
    else:
        model = trained_model(images, labels, device)
    model.to(memory_format=torch.channels_last)
    x = to_input(images[-cfg.n_eval :])  # digits the one-epoch model did not train on
    with torch.no_grad():
        predicted = torch.cat(
            [model(x[s : s + 256].to(device)).argmax(1).cpu() for s in range(0, len(x), 256)]
        )
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    start = time.perf_counter()
    result = evaluate_maps(model, x, predicted, cfg, seed)
    batched = time.perf_counter() - start
    # The same share of images gets the randomisation check as in the stage (50 of 1,000).
    share = round(args.baseline_images * cfg.n_randomization / cfg.n_eval)
    small = cfg.model_copy(update={"n_randomization": max(1, share)})
    base = one_by_one(model, x[: args.baseline_images], small, seed)

    ours, theirs = cfg.n_eval / batched, args.baseline_images / base
    print(
        f"  batched (the stage), {cfg.n_eval:,} images   {batched:7.1f} s  {ours:8.1f} img/s\n"
        f"  one image at a time, {args.baseline_images:,} images   {base:7.1f} s  {theirs:8.1f} img/s\n"
        f"  ratio {ours / theirs:.1f}x"
    )
    print("  deletion AUC " + ", ".join(f"{m} {v:.3f}" for m, v in result.deletion_auc.items()))
    if args.json:
        write_json(
            args.json,
            {
                "batched_s": batched,
                "batched_img_s": ours,
                "baseline_img_s": theirs,
                "ratio": ours / theirs,
            },
        )


if __name__ == "__main__":
    main()
