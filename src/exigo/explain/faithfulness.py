"""Saliency maps and the numbers that say whether they mean anything.

Attribution methods come from Captum: the vanilla gradient of the target-class logit (Simonyan et
al. 2013), Integrated Gradients from a black image, SmoothGrad, and Grad-CAM on the model's last
conv layer. Two checks score the maps: deletion/insertion curves (Petsiuk et al. 2018) against a
random pixel order, and the cascading model-randomisation test (Adebayo et al. 2018).

Every map is (N, H, W) in pixel space, whatever the number of channels C: models take pixels in
[0, 1] and normalise them themselves. For C > 1 a method's attributions (N, C, H, W) become one
value per pixel: Σc|a| for methods ranked by magnitude (SmoothGrad, the gradient), Σc a for
signed evidence (Integrated Gradients, Grad-CAM, occlusion); for C = 1 the map is a's one
channel. Deletion replaces all channels of a pixel with the dataset's mean colour; insertion
starts from an image of that colour and puts the pixels back.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from exigo.core.errors import ExigoError
from exigo.core.params import SaliencyParams
from exigo.core.registry import SALIENCY_METHODS
from exigo.explain.method import SaliencyMethod

RANDOM = "random"  # the pixel order every method should beat


class _FrozenWeights:
    """Input gradients only: no gradient buffers for the weights (faster, and models stay clean)."""

    def __init__(self, model: nn.Module) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __enter__(self) -> None:
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for p in self.params:
            p.requires_grad_(True)


def method_for(name: str, cfg: SaliencyParams) -> SaliencyMethod:
    """The registered method `name` with its own settings (saliency.<name>)."""
    return SALIENCY_METHODS.get(name).target(cfg.settings_of(name))


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    method: str,
    cfg: SaliencyParams,
    seed: int = 0,
) -> torch.Tensor:
    """Maps of `method` for inputs x (N, C, H, W) in [0, 1] and targets (N,): (N, H, W) on the
    CPU, one value per pixel (see the module's docstring for how channels combine). Batched so
    that each forward pass holds about cfg.batch_size images (an Integrated Gradients or
    SmoothGrad call expands each image into several copies)."""
    impl = method_for(method, cfg)
    magnitude = impl.rank_by_magnitude
    chunk = max(1, cfg.batch_size // impl.copies)
    device = next(model.parameters()).device
    if impl.seeded:
        torch.manual_seed(seed)
    out = []
    with _FrozenWeights(model):
        for start in range(0, len(x), chunk):
            xb = x[start : start + chunk].to(device).clone().requires_grad_(True)
            tb = target[start : start + chunk].to(device)
            attr = impl.attribute(model, xb, tb).detach()
            if attr.dim() != 4 or attr.shape[0] != len(xb) or attr.shape[2:] != xb.shape[2:]:
                raise ValueError(
                    f"saliency method {method!r} returned shape {tuple(attr.shape)} for inputs "
                    f"{tuple(xb.shape)}: expected (B, C, H, W) or (B, 1, H, W)"
                )
            if attr.shape[1] == 1:
                out.append(attr[:, 0].cpu())
            else:  # a value per pixel: Σc|a| for a sensitivity, Σc a for signed evidence
                out.append((attr.abs() if magnitude else attr).sum(1).cpu())
    return torch.cat(out) if out else torch.empty(0, *x.shape[-2:])


def ranking_score(maps: torch.Tensor, method: str) -> torch.Tensor:
    """What orders the pixels of a map, most important first: |map| or the signed map."""
    return maps.abs() if SALIENCY_METHODS.get(method).target.rank_by_magnitude else maps


def pixel_order(
    score: torch.Tensor | None, n: int, n_pixels: int, generator: torch.Generator
) -> torch.Tensor:
    """(N, P) pixel indices, most important first. Ties (flat Grad-CAM regions) fall in a random
    order, not in raster order; score None gives a purely random order."""
    perm = torch.stack([torch.randperm(n_pixels, generator=generator) for _ in range(n)])
    if score is None:
        return perm
    flat = score.reshape(n, n_pixels)
    inner = torch.argsort(flat.gather(1, perm), dim=1, descending=True, stable=True)
    return perm.gather(1, inner)


def fractions(steps: int, n_pixels: int) -> np.ndarray:
    """The x axis of the curves: (steps + 1,) fractions of whole pixels from 0 to 1, spaced as
    (i / steps)^2 so that most points fall early, where the curves move (a good map's first few
    percent of pixels decide the class); the curves are flat towards the end."""
    counts = np.round((np.arange(steps + 1) / steps) ** 2 * n_pixels)
    return np.maximum.accumulate(counts) / n_pixels


@torch.no_grad()
def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    cls: torch.Tensor,
    order: torch.Tensor,
    steps: int,
    batch_size: int,
    baseline: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Petsiuk et al.: the probability of class `cls` as pixels are removed from x (all their
    channels set to `baseline`, a colour (C,): the dataset's mean; default black) or inserted,
    in `order`, into an image of that colour. Returns (deletion, insertion), each (N, steps + 1).

    Removing or inserting a pixel that already has the baseline colour changes nothing, so a
    step's image is fixed by how many other pixels it has removed (inserted) so far. Only the
    distinct images go through the model, in batches of about batch_size; repeated steps reuse
    their probability. Exact, and on MNIST against black most steps of a good ordering are
    repeats (its ink comes first)."""
    n, n_pixels = order.shape
    channels = x.shape[1]
    device = next(model.parameters()).device
    if baseline is None:
        baseline = torch.zeros(channels)
    fill = baseline.to(x.dtype).reshape(1, channels, 1)  # (1, C, 1)
    flat = x.reshape(n, channels, n_pixels)
    # (N, P): whether each pixel, in `order`, differs from the baseline colour
    ink = (flat != fill).any(1).gather(1, order)
    ink_before = torch.nn.functional.pad(ink.long().cumsum(1), (1, 0))  # (N, P+1)
    counts = torch.from_numpy(np.round(fractions(steps, n_pixels) * n_pixels)).long()
    c = ink_before[:, counts]  # (N, S+1): ink pixels removed (inserted) by each step
    total = c[:, -1:]
    # Each ink pixel's place among the ink pixels of the order; background pixels never count.
    ink_rank = torch.full_like(order, n_pixels)
    ink_rank.scatter_(1, order, torch.where(ink, ink_before[:, :-1], n_pixels))
    inner = (c > 0) & (c < total)
    new = inner & torch.cat([torch.ones_like(c[:, :1], dtype=torch.bool), c[:, 1:] != c[:, :-1]], 1)
    rows, cols = torch.nonzero(new, as_tuple=True)  # one forward pass per distinct image
    values = c[rows, cols]

    def probs(images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, len(idx), batch_size):
            batch = images[s : s + batch_size].reshape(-1, *x.shape[1:]).to(device)
            p = model(batch).softmax(1)
            out.append(p.gather(1, cls[idx[s : s + batch_size], None].to(device))[:, 0].cpu())
        return torch.cat(out) if out else torch.empty(0)

    full = probs(x, torch.arange(n))
    plain = fill.reshape(1, channels, 1, 1).expand(1, *x.shape[1:]).to(device)
    empty = model(plain).softmax(1)[0].cpu()[cls]
    curves = []
    for keep_removed in (True, False):  # deletion, then insertion
        p_new = []
        for s in range(0, len(rows), batch_size):
            r, v = rows[s : s + batch_size], values[s : s + batch_size, None]
            shown = ink_rank[r] >= v if keep_removed else ink_rank[r] < v
            p_new.append(probs(torch.where(shown[:, None, :], flat[r], fill), r))
        p_new = torch.cat(p_new) if p_new else torch.empty(0)
        # Every inner step takes the probability of the latest distinct image at or before it.
        slot = torch.full(c.shape, -1, dtype=torch.long)
        slot[rows, cols] = torch.arange(len(rows))
        slot = slot.cummax(1).values
        curve = torch.where(inner, p_new[slot.clamp(min=0)] if len(p_new) else 0.0, 0.0)
        start, end = (full, empty) if keep_removed else (empty, full)
        curve = torch.where(c == 0, start[:, None], curve)
        curve = torch.where((c == total) & (c > 0), end[:, None], curve)
        curves.append(curve)
    return curves[0], curves[1]


def fused_copy(model: nn.Module) -> nn.Module:
    """An inference-only copy with each batch norm folded into the conv before it: the same
    outputs (to float rounding), about a third faster on the CPU. For forward passes only."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model).eval()
    for seq in fused.modules():
        if isinstance(seq, nn.Sequential):
            for i in range(len(seq) - 1):
                if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                    seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                    seq[i + 1] = nn.Identity()
    return fused


def auc(curves: torch.Tensor, steps: int, n_pixels: int) -> float:
    """Area under the mean curve over fraction in [0, 1] (trapezoid rule)."""
    mean = curves.double().mean(0).numpy()
    xs = fractions(steps, n_pixels)
    return float(np.sum((xs[1:] - xs[:-1]) * (mean[1:] + mean[:-1]) / 2))


def cascade_layers(model: nn.Module) -> list[str]:
    """The model's blocks with weights (a conv with its batch norm is one block), from the logits
    down to the input: the order Adebayo et al. re-initialise them in. Every exigo model lists
    its blocks, input to output (`blocks()`: for timm's and yours, the wrapped net's); any other
    module, by its children that hold weights."""
    if callable(getattr(model, "blocks", None)):
        return list(model.blocks())[::-1]
    return [name for name, m in model.named_children() if any(True for _ in m.parameters())][::-1]


def reinitialize(block: nn.Module) -> None:
    """Fresh random weights (and batch-norm statistics) for every layer of a block."""
    for m in block.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation of each pair of maps, (N, ...) x (N, ...) -> (N,); a constant map
    has no ranking and counts as 0."""
    from scipy.stats import rankdata

    ra = rankdata(a.reshape(len(a), -1).double().numpy(), axis=1)
    rb = rankdata(b.reshape(len(b), -1).double().numpy(), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denom = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(1) / denom
    return np.nan_to_num(rho, nan=0.0)


def cascading_randomization(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    methods: Sequence[str],
    cfg: SaliencyParams,
    seed: int,
    reference: dict[str, torch.Tensor] | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """Re-initialise the model's layers one by one from the top down; after each, the mean Spearman
    correlation between each method's ranking of the pixels and the trained model's. Returns
    {method: [(layer re-initialised last, rho), ...]}, the last entry with every layer random."""
    if reference is None:
        reference = {m: attribute(model, x, target, m, cfg, seed) for m in methods}
    randomized = copy.deepcopy(model)
    torch.manual_seed(seed)
    out: dict[str, list[tuple[str, float]]] = {m: [] for m in methods}
    for name in cascade_layers(randomized):
        reinitialize(randomized.get_submodule(name))
        for m in methods:
            maps = attribute(randomized, x, target, m, cfg, seed)
            rho = spearman_rows(ranking_score(reference[m], m), ranking_score(maps, m))
            out[m].append((name, float(rho.mean())))
    return out


def select_images(labels: torch.Tensor, n: int, n_classes: int, seed: int) -> torch.Tensor:
    """n test indices, one per class in class order (then around again), seeded."""
    gen = torch.Generator().manual_seed(seed)
    pools = []
    for c in range(n_classes):
        idx = torch.nonzero(labels == c).flatten()
        pools.append(idx[torch.randperm(len(idx), generator=gen)])
    chosen, taken = [], [0] * n_classes
    while len(chosen) < n and any(taken[c] < len(pools[c]) for c in range(n_classes)):
        for c in range(n_classes):
            if len(chosen) < n and taken[c] < len(pools[c]):
                chosen.append(int(pools[c][taken[c]]))
                taken[c] += 1
    return torch.tensor(chosen, dtype=torch.long)


@dataclass(frozen=True)
class Evaluation:
    """What the metrics and the curve plots are made of."""

    deletion: dict[str, np.ndarray]  # method (and "random") -> mean curve, (steps + 1,)
    insertion: dict[str, np.ndarray]
    deletion_auc: dict[str, float]
    insertion_auc: dict[str, float]
    randomization: dict[str, list[tuple[str, float]]]  # method -> cascade of (layer, rho)
    maps: dict[str, torch.Tensor]  # method -> (N, H, W) maps of the trained model
    predicted: torch.Tensor  # (N,) the class each map explains
    fractions: np.ndarray  # (steps + 1,) the curves' x: fractions of the pixels changed

    def metrics(self, flag_correlation: float) -> dict:
        """Flat numbers for metrics/saliency.json (flags as 0/1: dvc exp show wants numbers)."""
        final = {m: cascade[-1][1] for m, cascade in self.randomization.items()}
        return {
            "n_images": len(self.predicted),
            "deletion_auc": self.deletion_auc,
            "insertion_auc": self.insertion_auc,
            "randomization_spearman": final,
            "randomization_flagged": {m: int(rho > flag_correlation) for m, rho in final.items()},
            # rho after re-initialising every block from the logits down to (and with) this one
            "randomization_cascade": {m: dict(c) for m, c in self.randomization.items()},
        }

    def headline(self, flag_correlation: float) -> dict:
        """The few numbers DVC tracks: the method with the lowest deletion AUC, its two AUCs,
        the random order's deletion AUC, and how many methods the randomisation check flags."""
        detail = self.metrics(flag_correlation)
        methods = [m for m in self.deletion_auc if m != RANDOM]
        best = min(methods, key=lambda m: (self.deletion_auc[m], methods.index(m)))
        return {
            "best_method": best,
            "deletion_auc": self.deletion_auc[best],
            "insertion_auc": self.insertion_auc[best],
            "random_deletion_auc": self.deletion_auc[RANDOM],
            "flagged": sum(detail["randomization_flagged"].values()),
        }


def evaluate_maps(
    model: nn.Module,
    x: torch.Tensor,
    predicted: torch.Tensor,
    cfg: SaliencyParams,
    seed: int,
    baseline: torch.Tensor | None = None,
) -> Evaluation:
    """Maps of every method for x (N, C, H, W), each explaining the class the model predicted
    (the decision the curves follow); their deletion/insertion curves against a random order
    (pixels replaced by `baseline`, a colour (C,): the dataset's mean), and the randomisation
    check on the first cfg.n_randomization images."""
    n, n_pixels = len(x), x[0, 0].numel()
    gen = torch.Generator().manual_seed(seed)
    fast = fused_copy(model)  # the same maps and probabilities, a third faster
    maps = {m: attribute(fast, x, predicted, m, cfg, seed) for m in cfg.methods}
    orders = {m: pixel_order(ranking_score(maps[m], m), n, n_pixels, gen) for m in cfg.methods}
    orders[RANDOM] = pixel_order(None, n, n_pixels, gen)
    deletion, insertion = {}, {}
    for name, order in orders.items():
        deletion[name], insertion[name] = deletion_insertion(
            fast, x, predicted, order, cfg.deletion_steps, cfg.batch_size, baseline
        )
    k = min(cfg.n_randomization, n)
    reference = {m: maps[m][:k] for m in cfg.methods}
    randomization = cascading_randomization(
        model, x[:k], predicted[:k], cfg.methods, cfg, seed, reference
    )
    return Evaluation(
        deletion={m: c.double().mean(0).numpy() for m, c in deletion.items()},
        insertion={m: c.double().mean(0).numpy() for m, c in insertion.items()},
        deletion_auc={m: auc(c, cfg.deletion_steps, n_pixels) for m, c in deletion.items()},
        insertion_auc={m: auc(c, cfg.deletion_steps, n_pixels) for m, c in insertion.items()},
        randomization=randomization,
        maps=maps,
        predicted=predicted,
        fractions=fractions(cfg.deletion_steps, n_pixels),
    )


def gradient_rows(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, cfg: SaliencyParams
) -> dict[str, torch.Tensor]:
    """The five rows of the original figure: source (the images, (N, C, H, W)), then (N, H, W)
    maps: baseline (the gradient at an empty, black image), saliency (the gradient at the image),
    delta, overlay (delta x the image's brightness)."""
    baseline = attribute(model, torch.zeros_like(x), target, "gradient", cfg)
    saliency = attribute(model, x, target, "gradient", cfg)
    delta = saliency - baseline
    return {
        "source": x,
        "baseline": baseline,
        "saliency": saliency,
        "delta": delta,
        "overlay": delta * x.mean(1),
    }


def class_means(
    maps: dict[str, torch.Tensor], mask: torch.Tensor, labels: torch.Tensor, n_classes: int
) -> dict[str, torch.Tensor]:
    """Per method, the mean map of each class over the images where mask holds (the correctly
    classified ones): (n_classes, ...) of each map's shape; a class with no such image is all
    zeros."""
    out = {}
    for m, v in maps.items():
        means = torch.zeros(n_classes, *v.shape[1:], dtype=v.dtype)
        for c in range(n_classes):
            keep = mask & (labels == c)
            if keep.any():
                means[c] = v[keep].mean(0)
        out[m] = means
    return out


def eval_subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """A seeded random subset of min(n, n_total) test indices, in test order."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=gen)[:n].sort().values


@dataclass(frozen=True)
class PairMaps:
    """Maps of the most-confused pairs: one image per pair, explained for both classes."""

    index: torch.Tensor  # (K,) test indices
    true: torch.Tensor  # (K,) true classes
    predicted: torch.Tensor  # (K,) predicted classes
    true_maps: dict[str, torch.Tensor]  # method -> (K, H, W) maps for the true class
    predicted_maps: dict[str, torch.Tensor]  # method -> (K, H, W) maps for the predicted class


def logits(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, classes) logits on the CPU for uint8 images (N, C, H, W), in batches on the model's
    device."""
    from exigo.data.splits import Split
    from exigo.models.training import predict

    device = next(model.parameters()).device
    return predict(
        model, Split(images, torch.zeros(len(images), dtype=torch.long)), batch_size, device
    )


def confused_pair_maps(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    pairs: Sequence[tuple[int, int]],
    cfg: SaliencyParams,
    seed: int,
) -> PairMaps | None:
    """For each (true, predicted) pair, the image of class `true` the model takes for `predicted`
    most confidently, and every method's maps for both classes; None when no pair has one."""
    from exigo.data.splits import to_input

    found = []
    for t, p in pairs:
        idx = torch.nonzero(labels == t).flatten()
        probs = logits(model, images[idx], cfg.batch_size).softmax(1)  # only class t's images
        wrong = torch.nonzero(probs.argmax(1) == p).flatten()
        if len(wrong):
            found.append((int(idx[wrong[probs[wrong, p].argmax()]]), t, p))
    if not found:
        return None
    index, true, predicted = (torch.tensor(col) for col in zip(*found, strict=True))
    x = to_input(images[index])
    return PairMaps(
        index,
        true,
        predicted,
        {m: attribute(model, x, true, m, cfg, seed) for m in cfg.methods},
        {m: attribute(model, x, predicted, m, cfg, seed) for m in cfg.methods},
    )


def curve_table(
    curves: dict[str, np.ndarray], methods: Sequence[str], xs: np.ndarray
) -> tuple[list[str], list[list]]:
    """Mean curves in long form for DVC, MLflow and compare: [method, fraction, probability], one
    row per method and step, the methods in params order and then the random order. The method is
    a column, so dvc.yaml declares the plot once; a method in `methods` without a curve is an
    error, never a silently missing series."""
    missing = [m for m in (*methods, RANDOM) if m not in curves]
    if missing:
        raise ExigoError(
            f"saliency: no curve for method(s) {', '.join(missing)} listed in saliency.methods; "
            "its module's attribute() returned nothing for them"
        )
    rows = [
        [m, round(float(f), 6), round(float(curves[m][i]), 6)]
        for m in (*methods, RANDOM)
        for i, f in enumerate(xs)
    ]
    return ["method", "fraction", "probability"], rows
