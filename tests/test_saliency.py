"""The saliency stage: maps that are right on models whose answer is known, metrics that tell a
meaningful map from a meaningless one, and the stage's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_digits, make_project, run_stage, tiny_params
from PIL import Image
from torch import nn

from exigo.core.errors import ExigoError
from exigo.core.params import SaliencyParams
from exigo.core.registry import SALIENCY_METHODS
from exigo.explain.faithfulness import (
    RANDOM,
    attribute,
    auc,
    cascading_randomization,
    curve_table,
    deletion_insertion,
    evaluate_maps,
    fractions,
    pixel_order,
    select_images,
    spearman_rows,
)
from exigo.explain.figures import DPI, grid_figsize
from exigo.models.checkpoint import build_model
from exigo.models.layers import Classifier

METHODS = SALIENCY_METHODS.names()

CFG = SaliencyParams(integrated_gradients={"steps": 32}, smoothgrad={"samples": 4}, batch_size=64)


def linear_model(weight: torch.Tensor) -> nn.Module:
    """logits = W @ pixels: the gradient of logit c is W[c], whatever the input."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, len(weight), bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weight)
    return model.eval()


def tiny_cnn(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    settings = {"channels": [4, 8], "hidden": 16, "dropout": 0.0}
    return build_model("cnn", settings, 10, 0.13, 0.3).eval()


def block_oracle() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The synthetic task of conftest.make_digits (class k lights a 6x6 block at its own place)
    and a model that decides by the mean brightness of each class's block: the deciding pixels are
    known. Returns (model, images in [0, 1], the block mask of each image's class)."""
    images, labels = make_digits(60, seed=3)
    weight = torch.zeros(10, 28, 28)
    for k in range(10):
        r, c = 3 + 6 * (k // 4), 3 + 6 * (k % 4)
        weight[k, r : r + 6, c : c + 6] = 20.0 / 36
    x = torch.from_numpy(images).float().div(255)[:, None]
    return linear_model(weight.reshape(10, -1)), x, weight[torch.from_numpy(labels).long()] > 0


def test_linear_model_gradient_is_the_target_weight_row():
    weight = torch.randn(10, 28 * 28, generator=torch.Generator().manual_seed(0))
    model = linear_model(weight)
    x = torch.rand(5, 1, 28, 28)
    target = torch.tensor([0, 3, 3, 7, 9])
    maps = attribute(model, x, target, "gradient", CFG)
    torch.testing.assert_close(maps, weight[target].reshape(5, 28, 28))


@pytest.mark.parametrize("method", METHODS)
def test_the_map_changes_with_the_target_class(method):
    model, x = tiny_cnn(), torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    a = attribute(model, x, torch.tensor([1, 1, 1]), method, CFG, seed=0)
    b = attribute(model, x, torch.tensor([2, 2, 2]), method, CFG, seed=0)
    assert a.shape == (3, 28, 28)
    assert not torch.allclose(a, b)


def test_integrated_gradients_are_complete():
    """The attributions sum to the logit's difference between the image and the black baseline."""
    model, x = tiny_cnn(), torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([0, 4, 5, 9])
    cfg = SaliencyParams(integrated_gradients={"steps": 256}, batch_size=1024)  # close to exact
    maps = attribute(model, x, target, "integrated_gradients", cfg)
    with torch.no_grad():
        gap = (model(x) - model(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(maps.sum((1, 2)), gap, rtol=0.02, atol=0.02 * gap.abs().max())


def test_an_oracle_map_deletes_better_than_random_order():
    model, x, oracle = block_oracle()
    cls = model(x).argmax(1)
    gen = torch.Generator().manual_seed(0)
    steps = 10
    by_oracle = deletion_insertion(
        model, x, cls, pixel_order(oracle.float(), 60, 784, gen), steps, 97
    )
    by_chance = deletion_insertion(model, x, cls, pixel_order(None, 60, 784, gen), steps, 97)
    area = lambda c: auc(c, steps, 784)  # noqa: E731
    assert area(by_oracle[0]) < area(by_chance[0]) - 0.2  # deletion: lower is better
    assert area(by_oracle[1]) > area(by_chance[1]) + 0.2  # insertion: higher is better
    # The curves start at the image and end at the empty image, whatever the order.
    torch.testing.assert_close(by_oracle[0][:, 0], by_chance[0][:, 0])
    torch.testing.assert_close(by_oracle[0][:, -1], by_oracle[1][:, 0])


def test_deletion_matches_a_step_by_step_loop():
    """Skipping steps that remove only background must not change a single probability."""
    model, x = tiny_cnn(), torch.from_numpy(make_digits(12, seed=4)[0]).float().div(255)[:, None]
    x[x < 0.2] = 0  # a real background, as in MNIST
    cls = torch.arange(12) % 10
    order = pixel_order(attribute(model, x, cls, "gradient", CFG).abs(), 12, 784, torch.Generator())
    deletion, insertion = deletion_insertion(model, x, cls, order, 6, 50)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(784).expand(12, 784).contiguous()
    )
    flat = x.reshape(12, 784)
    with torch.no_grad():
        for i, f in enumerate(fractions(6, 784)):
            k = round(f * 784)
            for curve, keep in ((deletion, rank >= k), (insertion, rank < k)):
                p = model((flat * keep).reshape(12, 1, 28, 28)).softmax(1)[torch.arange(12), cls]
                torch.testing.assert_close(curve[:, i], p, rtol=1e-5, atol=1e-6)


def test_deletion_of_colour_images_puts_the_mean_colour_in_every_channel():
    """RGB, 12x10 pixels, a mean colour as the baseline: each step's image, built by hand, gives
    the probabilities the curves hold (the repeated-step shortcut changes nothing)."""
    gen = torch.Generator().manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 10, 4)).eval()
    x = torch.rand(5, 3, 12, 10, generator=gen)
    x[:, :, :4] = torch.tensor([0.2, 0.4, 0.6])[:, None, None]  # some pixels already the baseline
    colour = torch.tensor([0.2, 0.4, 0.6])
    cls = torch.arange(5) % 4
    order = pixel_order(torch.rand(5, 12, 10, generator=gen), 5, 120, gen)
    deletion, insertion = deletion_insertion(model, x, cls, order, 5, 7, colour)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(120).expand(5, 120).contiguous())
    plain = colour[None, :, None, None].expand_as(x)
    with torch.no_grad():
        for i, f in enumerate(fractions(5, 120)):
            k = round(f * 120)
            for curve, keep in ((deletion, rank >= k), (insertion, rank < k)):
                image = torch.where(keep.reshape(5, 1, 12, 10), x, plain)
                p = model(image).softmax(1)[torch.arange(5), cls]
                torch.testing.assert_close(curve[:, i], p, rtol=1e-5, atol=1e-6)


def test_maps_of_colour_images_are_one_value_per_pixel():
    """(N, 3, H, W) inputs give (N, H, W) maps: Σc|a| for a method ranked by magnitude, Σc a for
    signed evidence."""
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 9 * 11, 3)).eval()
    x, cls = torch.rand(4, 3, 9, 11, generator=gen), torch.tensor([0, 1, 2, 0])
    grad = model[1].weight[cls].reshape(4, 3, 9, 11).detach()
    torch.testing.assert_close(attribute(model, x, cls, "gradient", CFG), grad.abs().sum(1))
    ig = attribute(model, x, cls, "integrated_gradients", CFG)  # linear: exactly w * x
    torch.testing.assert_close(ig, (grad * x).sum(1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 13, 17), (3, 40, 36)], ids=str)
def test_every_method_maps_every_image_size(shape):
    """From 8x8 up, grey or colour, square or not: one (H, W) map per image from every method, and
    the curves over that many pixels."""
    torch.manual_seed(0)
    settings = {"channels": [4, 8], "hidden": 16, "dropout": 0.0}
    model = build_model("cnn", settings, 3, [0.5] * shape[0], [0.25] * shape[0], shape).eval()
    x, cls = torch.rand(4, *shape), torch.tensor([0, 1, 2, 0])
    cfg = SaliencyParams(
        methods=SALIENCY_METHODS.names(), integrated_gradients={"steps": 2}, deletion_steps=3,
        n_randomization=2, smoothgrad={"samples": 2}, occlusion={"window": 2, "stride": 2},
    )  # fmt: skip
    result = evaluate_maps(model, x, cls, cfg, seed=0, baseline=torch.full((shape[0],), 0.5))
    for maps in result.maps.values():
        assert maps.shape == (4, *shape[1:])
    assert len(result.fractions) == 4 and result.fractions[-1] == 1.0


def test_a_randomised_model_gives_low_rank_correlation():
    model, x, _ = block_oracle()
    cls = model(x).argmax(1)
    cascade = cascading_randomization(model, x, cls, ["gradient"], CFG, seed=0)
    ((layer, rho),) = cascade["gradient"]
    assert layer == "1" and abs(rho) < 0.2
    maps = attribute(model, x, cls, "gradient", CFG)
    assert spearman_rows(maps, maps) == pytest.approx(np.ones(len(x)))  # the check's upper end


def test_metrics_are_deterministic_for_a_seed():
    model, x = tiny_cnn(), torch.from_numpy(make_digits(16, seed=5)[0]).float().div(255)[:, None]
    cfg = SaliencyParams(
        n_randomization=4,
        integrated_gradients={"steps": 4},
        smoothgrad={"samples": 2},
        deletion_steps=4,
    )
    cls = model(x).argmax(1)
    first, second = (evaluate_maps(model, x, cls, cfg, seed=7).metrics(0.5) for _ in range(2))
    assert first == second
    assert evaluate_maps(model, x, cls, cfg, seed=8).metrics(0.5) != first  # the seed matters


def test_curve_table_is_long_with_the_method_in_a_column():
    curves = {"gradcam": np.array([1.0, 0.5, 0.0]), RANDOM: np.ones(3)}
    header, rows = curve_table(curves, ["gradcam"], fractions(2, 784))
    assert header == ["method", "fraction", "probability"]
    assert rows[1] == ["gradcam", 0.25, 0.5]  # fractions are (i / steps)^2
    assert [r[0] for r in rows] == ["gradcam"] * 3 + [RANDOM] * 3


def test_a_listed_method_without_a_curve_is_an_error_not_a_missing_series():
    with pytest.raises(ExigoError, match="no curve for method.*smoothgrad"):
        curve_table(
            {"gradcam": np.ones(3), RANDOM: np.ones(3)}, ["gradcam", "smoothgrad"], np.ones(3)
        )


def test_images_are_one_per_class_and_seeded():
    labels = torch.arange(50) % 10
    chosen = select_images(labels, 12, 10, seed=1)
    assert labels[chosen].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert torch.equal(chosen, select_images(labels, 12, 10, seed=1))
    assert not torch.equal(chosen, select_images(labels, 12, 10, seed=2))


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def expected_size(
    n_rows: int, n_cols: int, n_panels: int = 1, stacked: bool = False
) -> tuple[int, int]:
    w, h = grid_figsize(n_rows, n_cols, n_panels, stacked)
    return round(w * DPI), round(h * DPI)


def test_stage_outputs(tiny_project, stage_env):
    run_stage("train", tiny_project, stage_env)
    run_stage("evaluate", tiny_project, stage_env)
    out = run_stage("saliency", tiny_project, stage_env).stdout
    assert "deletion AUC" in out
    cfg = SaliencyParams(**tiny_params()["saliency"])
    m = len(cfg.methods)
    images = tiny_project / "plots/saliency/images"
    # One column per image; five rows, before training above after (a page wide, not two).
    assert png_size(images / "gradient.png") == expected_size(5, cfg.n_images, 2, stacked=True)
    assert png_size(images / "methods.png") == expected_size(1 + m, cfg.n_images)
    assert png_size(images / "class_means.png") == expected_size(1 + m, 10)
    evaluate = json.loads((tiny_project / "metrics/detail/evaluate.json").read_text())
    n_pairs = min(cfg.n_pairs, len(evaluate["confused"]))
    if n_pairs:
        assert png_size(images / "confused_pairs.png")[1] == expected_size(1 + 2 * m, 1)[1]

    metrics = json.loads((tiny_project / "metrics/detail/saliency.json").read_text())
    assert metrics["n_images"] == cfg.n_eval
    for key in ("deletion_auc", "insertion_auc"):
        assert set(metrics[key]) == {*cfg.methods, RANDOM}
        assert all(0 <= v <= 1 for v in metrics[key].values())
    assert set(metrics["randomization_spearman"]) == set(cfg.methods)
    assert set(metrics["randomization_flagged"].values()) <= {0, 1}
    cascade = metrics["randomization_cascade"]["gradient"]
    assert list(cascade) == ["head", "fc", "conv2", "conv1"]  # from the logits down
    assert cascade["conv1"] == metrics["randomization_spearman"]["gradient"]
    # DVC tracks a headline: the best method by deletion AUC, and the random order's AUC.
    tracked = json.loads((tiny_project / "metrics/saliency.json").read_text())
    best = min(cfg.methods, key=lambda m: metrics["deletion_auc"][m])
    assert tracked == {
        "best_method": best,
        "deletion_auc": metrics["deletion_auc"][best],
        "insertion_auc": metrics["insertion_auc"][best],
        "random_deletion_auc": metrics["deletion_auc"][RANDOM],
        "flagged": sum(metrics["randomization_flagged"].values()),
    }
    for name in ("deletion", "insertion"):
        lines = (tiny_project / f"plots/saliency/{name}.csv").read_text().splitlines()
        assert lines[0] == "method,fraction,probability"
        assert len(lines) == 1 + (len(cfg.methods) + 1) * (cfg.deletion_steps + 1)
        assert [line.split(",")[0] for line in lines[1 :: cfg.deletion_steps + 1]] == [
            *cfg.methods,
            RANDOM,
        ]


def test_bad_params_give_one_clear_line(tmp_path, stage_env):
    params = tiny_params(saliency={"methods": ["gradient", "lime"]})
    project = make_project(tmp_path / "proj", params, code=False)
    result = run_stage("saliency", project, stage_env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: params.yaml: saliency.methods.1: input should be "
        + ", ".join(f"'{m}'" for m in METHODS[:-1])
        + f" or '{METHODS[-1]}' (got 'lime')"
    )
    assert not (project / "metrics").exists() and not (project / "plots").exists()


def test_blank_gradcam_maps_are_explained_on_the_figure():
    """Grad-CAM keeps only positive evidence; where its map is blank the figure says so."""
    from exigo.explain.figures import _notes
    from exigo.explain.methods.gradcam import GradCam

    maps = np.random.default_rng(0).random((4, 28, 28))
    maps[2] = 0.0
    assert _notes("gradcam", maps) == {2: GradCam.blank_note}
    assert _notes("gradient", maps) == {}


def test_occlusion_of_a_linear_model_is_the_windowed_weight_times_the_pixels():
    """For a linear model, occluding a window drops the logit by the window's weight x pixel sum:
    with a 1-pixel window, the map is exactly weight * x."""
    weight = torch.randn(10, 28 * 28, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, 1, 28, 28)
    target = torch.tensor([1, 4, 9])
    cfg = SaliencyParams(occlusion={"window": 1, "stride": 1})
    maps = attribute(linear_model(weight), x, target, "occlusion", cfg)
    torch.testing.assert_close(maps, weight[target].reshape(3, 28, 28) * x[:, 0])
