"""The evaluate stage: metrics agree with a hand-computed confusion matrix; rows are the true class."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import run_stage
from PIL import Image

from exigo.data.splits import load_dataset
from exigo.evaluate.metrics import classification_metrics, confusion, metric_key, most_confused


def test_metrics_agree_with_a_hand_computed_confusion_matrix():
    # 3 classes. Hand-built: rows = true, columns = predicted.
    #          pred a  b  c
    #   true a      3  1  0
    #   true b      0  2  2
    #   true c      1  0  1
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 2])
    cm = confusion(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[3, 1, 0], [0, 2, 2], [1, 0, 1]])
    m = classification_metrics(y_true, y_pred, ("a", "b", "c"), n_confused=2)
    assert m["accuracy"] == pytest.approx(6 / 10)
    # precision = diagonal / column sum, recall = diagonal / row sum
    assert m["per_class"]["a"]["precision"] == pytest.approx(3 / 4)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["precision"] == pytest.approx(1 / 3)
    assert m["per_class"]["a"]["recall"] == pytest.approx(3 / 4)
    assert m["per_class"]["b"]["recall"] == pytest.approx(2 / 4)
    assert m["per_class"]["c"]["recall"] == pytest.approx(1 / 2)
    f1_b = 2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2)
    assert m["per_class"]["b"]["f1"] == pytest.approx(f1_b)
    assert m["macro"]["recall"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    assert m["weighted"]["recall"] == pytest.approx(0.6)  # weighted recall is accuracy
    assert m["per_class"]["b"]["support"] == 4
    # Most confused: b taken for c twice, then (a->b or c->a) once; ties in class order.
    assert m["confused"]["top1"] == {"true": 1, "predicted": 2, "count": 2}
    assert m["confused"]["top2"] == {"true": 0, "predicted": 1, "count": 1}


def test_most_confused_skips_empty_cells():
    assert most_confused(np.eye(3, dtype=int) * 5, 3) == []


def test_metric_keys_survive_dvc_flattening():
    assert metric_key("T-shirt/top") == "t_shirt_top" and metric_key("Ankle boot") == "ankle_boot"


def test_evaluate_stage_outputs(tiny_project, stage_env):
    run_stage("train", tiny_project, stage_env)
    out = run_stage("evaluate", tiny_project, stage_env).stdout
    assert "test: accuracy" in out
    tracked = json.loads((tiny_project / "metrics/evaluate.json").read_text())
    assert set(tracked) == {"accuracy", "loss", "macro"}  # DVC shows the headline numbers
    assert set(tracked["macro"]) == {"precision", "recall", "f1"}
    metrics = json.loads((tiny_project / "metrics/detail/evaluate.json").read_text())
    for key in ("loss", "accuracy", "macro", "weighted", "per_class", "confused", "checkpoint"):
        assert key in metrics
    assert all(tracked[k] == metrics[k] for k in tracked)
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}

    # The plot data: the confusion matrix's non-zero cells (rows = actual, by class index),
    # which add up to the test split and rebuild the metrics.
    data = load_dataset(tiny_project / "data/idx")
    with (tiny_project / "plots/evaluate/confusion.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    cm = np.zeros((10, 10), int)
    for r in rows:
        assert int(r["count"]) > 0
        assert (r["actual"], r["predicted"]) == (r["actual_id"], r["predicted_id"])  # names 0..9
        cm[int(r["actual_id"]), int(r["predicted_id"])] = int(r["count"])
    np.testing.assert_array_equal(cm.sum(1), np.bincount(data.test.labels.numpy(), minlength=10))
    assert np.trace(cm) / cm.sum() == pytest.approx(metrics["accuracy"], abs=1e-6)
    recall_0 = cm[0, 0] / cm[0].sum() if cm[0].sum() else 0.0
    assert metrics["per_class"]["0"]["recall"] == pytest.approx(recall_0, abs=1e-6)

    images = tiny_project / "plots/evaluate/images"
    for name in ("confusion.png", "confusion_normalized.png", "mistakes.png"):
        with Image.open(images / name) as img:
            assert img.width > 150 and img.height > 150
    assert (
        torch.load(tiny_project / "models/model.pt", weights_only=True)["epoch"]
        == metrics["checkpoint"]["epoch"]
    )


def test_confusion_png_puts_true_class_on_rows(tmp_path):
    import matplotlib.pyplot as plt

    from exigo.views import figures as plotting

    captured = {}
    original = plotting.save_figure

    def keep(path, fig, **kw):  # look at the figure before it is written and closed
        ax = fig.axes[0]
        captured["ylabel"], captured["xlabel"] = ax.get_ylabel(), ax.get_xlabel()
        captured["cells"] = {t.get_text() for t in ax.texts}
        original(path, fig, **kw)

    plotting.save_figure = keep
    try:
        cm = np.array([[5, 7], [0, 3]])  # true 0 predicted as 1: seven times
        plotting.plot_confusion(cm, ("zero", "one"), tmp_path / "cm.png")
    finally:
        plotting.save_figure = original
        plt.close("all")
    assert captured["ylabel"] == "True class" and captured["xlabel"] == "Predicted class"
    assert captured["cells"] == {"5", "7", "3"}  # a zero cell is blank
    assert (tmp_path / "cm.png").stat().st_size > 1000


def test_mistakes_gallery_with_one_or_no_mistake(tmp_path):
    from exigo.views import figures as plotting

    images = np.zeros((1, 28, 28), np.uint8)
    one = np.array([3])
    plotting.plot_mistakes(
        images, one, one + 1, np.array([0.9]), tuple("0123456789"), tmp_path / "one.png"
    )
    empty = np.zeros(0, int)
    plotting.plot_mistakes(
        images[:0], empty, empty, empty.astype(float), tuple("0123456789"), tmp_path / "none.png"
    )
    assert (tmp_path / "one.png").exists() and (tmp_path / "none.png").exists()


def _one_line_error(result, expected: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, last


def test_missing_or_damaged_inputs_are_one_line_errors(tiny_project, stage_env):
    """Running a stage out of order, or on a damaged file, names the file and the stage to run."""
    missing = run_stage("evaluate", tiny_project, stage_env, check=False)
    _one_line_error(
        missing, "models/model.pt: missing; run the train stage first (dvc repro train)"
    )
    run_stage("train", tiny_project, stage_env)
    no_metrics = run_stage("saliency", tiny_project, stage_env, check=False)
    _one_line_error(
        no_metrics, "metrics/detail/evaluate.json: missing; run the evaluate stage first"
    )

    ckpt = tiny_project / "models/model.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:500])  # a truncated checkpoint
    _one_line_error(
        run_stage("evaluate", tiny_project, stage_env, check=False), "models/model.pt: unreadable"
    )
    (tiny_project / "data/idx/test.pt").write_bytes(b"not a tensor file")
    _one_line_error(
        run_stage("train", tiny_project, stage_env, check=False), "data/idx/test.pt: unreadable"
    )


@pytest.mark.slow
def test_a_model_that_learned_nothing_gets_warnings_not_tracebacks(tiny_project, stage_env):
    """All-zero weights and biases: every penultimate feature is 0 for every image (as with dead
    ReLUs). evaluate, saliency and embed finish, each saying so in one line."""
    from conftest import STAGES

    from exigo.models.checkpoint import save_checkpoint

    run_stage("train", tiny_project, stage_env)
    ckpt = torch.load(tiny_project / "models/model.pt", weights_only=True)
    state = {
        k: torch.zeros_like(v) if k.endswith((".weight", ".bias")) else v  # buffers stay
        for k, v in ckpt.pop("state_dict").items()
    }
    save_checkpoint(tiny_project / "models/model.pt", state, **ckpt)
    warnings = []
    for stage in STAGES[1:]:
        result = run_stage(stage, tiny_project, stage_env)
        assert "Traceback" not in result.stderr, result.stderr
        warnings += [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("test accuracy" in w and "chance level" in w for w in warnings), warnings
    assert any("learned features are the same for every test image" in w for w in warnings)
    embed = json.loads((tiny_project / "metrics/embed.json").read_text())
    assert embed == {"trustworthiness": None, "knn_acc_2d": None, "silhouette_2d": None}
