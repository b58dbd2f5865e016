"""Classification metrics from predictions (scikit-learn), flat enough for `dvc exp show`."""

from __future__ import annotations

import math
import re

import numpy as np


def metric_key(name: str) -> str:
    """A class name as a metrics key: 'T-shirt/top' -> 't_shirt_top' (DVC splits keys on dots)."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "class"


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, n) counts; rows are the true class, columns the predicted class (sklearn's convention)."""
    from sklearn.metrics import confusion_matrix  # imported here: train needs none of sklearn

    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def most_confused(cm: np.ndarray, k: int) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells as (true, predicted, count), ties broken by class order."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = [
        (int(t), int(p), int(off[t, p]))
        for t, p in zip(*np.unravel_index(order, cm.shape), strict=True)
    ]
    return [pair for pair in pairs if pair[2] > 0]


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...], n_confused: int = 5
) -> dict:
    """Accuracy, macro/weighted and per-class precision/recall/F1, most-confused pairs."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.arange(len(classes))
    cm = confusion(y_true, y_pred, len(classes))
    out: dict = {"accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0
        )
        out[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    p, r, f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    out["per_class"] = {
        metric_key(name): {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    out["confused"] = {
        f"top{rank}": {"true": t, "predicted": q, "count": n}
        for rank, (t, q, n) in enumerate(most_confused(cm, n_confused), start=1)
    }
    return out


def headline(metrics: dict) -> dict:
    """The numbers experiments are compared by: accuracy, loss, macro precision/recall/F1."""
    return {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "macro": metrics["macro"]}


def rounded(tree: dict, digits: int = 6) -> dict:
    """Round every float in a nested dict (stable, readable metrics files); NaN/inf become None
    (null in JSON: undefined, as for a map of constant features)."""
    return {
        k: rounded(v, digits)
        if isinstance(v, dict)
        else (round(v, digits) if math.isfinite(v) else None)
        if isinstance(v, float)
        else v
        for k, v in tree.items()
    }


def constant_features(x: np.ndarray) -> bool:
    """True when every feature is the same for every row (e.g. all ReLUs dead), or not finite."""
    x = np.asarray(x, dtype=np.float64)
    return bool(len(x) < 2 or not np.isfinite(x).all() or np.ptp(x, axis=0).max() <= 1e-12)


def at_chance(accuracy: float, n_classes: int) -> bool:
    """An accuracy a model that learned nothing gets (up to 1.5x chance)."""
    return accuracy <= 1.5 / n_classes
