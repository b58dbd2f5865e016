"""Evaluate the best checkpoint on the test split.

python -m stages.evaluate   # reads params.yaml (data, train.device, evaluate), writes
                            # metrics/evaluate.json (headline), metrics/detail/evaluate.json,
                            # plots/evaluate/confusion.csv and images/
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from exigo.core.errors import run_stage
from exigo.core.outputs import write_csv, write_json
from exigo.core.params import load_params
from exigo.core.progress import progress_bar
from exigo.core.runtime import resolve_device, warn
from exigo.data.splits import load_dataset
from exigo.evaluate.metrics import at_chance, classification_metrics, confusion, headline, rounded
from exigo.models.checkpoint import load_checkpoint
from exigo.models.training import loss_and_accuracy, predict
from exigo.views.figures import plot_confusion, plot_mistakes

PLOTS = Path("plots/evaluate")
DETAIL = Path("metrics/detail/evaluate.json")


def main() -> None:
    params = load_params()
    cfg = params.evaluate
    device = resolve_device(params.train.device)
    data = load_dataset(Path("data") / params.data.name)
    model, ckpt = load_checkpoint("models/model.pt", device)
    classes = tuple(ckpt["classes"])

    with progress_bar() as bar:
        task = bar.add_task("evaluate", total=len(data.test))
        logits = predict(model, data.test, cfg.batch_size, device, lambda n: bar.advance(task, n))
    loss, _ = loss_and_accuracy(logits, data.test.labels)
    probs = logits.softmax(1)
    confidence, pred = probs.max(1)
    y_true, y_pred = data.test.labels.numpy(), pred.numpy()

    metrics = {"loss": loss, **classification_metrics(y_true, y_pred, classes, cfg.n_confused)}
    metrics["checkpoint"] = {
        "epoch": ckpt["epoch"],
        ckpt["score"]["metric"]: ckpt["score"]["value"],
    }
    # DVC tracks the headline numbers (dvc exp show stays readable); the detail (weighted and
    # per-class scores, the most-confused pairs, the checkpoint) goes beside them.
    write_json(Path("metrics/evaluate.json"), rounded(headline(metrics)))
    write_json(DETAIL, rounded(metrics))

    cm = confusion(y_true, y_pred, len(classes))
    # The matrix's non-zero cells, for DVC's plots (.dvc/plots/confusion_*.json: x = predicted,
    # y = actual, ordered by class index); a blank cell is zero.
    write_csv(
        PLOTS / "confusion.csv",
        ["actual", "predicted", "count", "actual_id", "predicted_id"],
        [[classes[t], classes[p], int(n), t, p] for (t, p), n in np.ndenumerate(cm) if n],
    )
    plot_confusion(cm, classes, PLOTS / "images" / "confusion.png")
    plot_confusion(cm, classes, PLOTS / "images" / "confusion_normalized.png", normalize=True)
    wrong = torch.nonzero(pred != data.test.labels).flatten()
    order = confidence[wrong].argsort(descending=True, stable=True)
    worst = wrong[order][: cfg.n_mistakes].numpy()  # a numpy index: a single mistake stays 1-d
    plot_mistakes(
        data.test.images[worst].numpy(),
        y_true[worst],
        y_pred[worst],
        confidence[worst].numpy(),
        classes,
        PLOTS / "images" / "mistakes.png",
    )

    print(
        f"test: accuracy {metrics['accuracy']:.4f}, loss {loss:.4f}, macro F1 {metrics['macro']['f1']:.4f} "
        f"on {len(y_true):,} images; {len(wrong)} mistakes"
    )
    if at_chance(metrics["accuracy"], len(classes)):
        warn(
            f"test accuracy {metrics['accuracy']:.3f} is at chance level for {len(classes)} "
            "classes: the model did not learn (see metrics/train/metrics.json)"
        )
    for rank in metrics["confused"].values():
        print(f"  {classes[rank['true']]} taken for {classes[rank['predicted']]}: {rank['count']}×")


if __name__ == "__main__":
    run_stage(main)
