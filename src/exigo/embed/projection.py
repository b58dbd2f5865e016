"""Projection embeddings of penultimate features, and numbers that say how good a map is.

The projections themselves are registry entries (`exigo.embed.methods`: t-SNE, PCA). Quality numbers are scikit-learn's: trustworthiness of the 2-D map, k-NN accuracy (stratified
k-fold) in the map and in the full space, and the silhouette score by true label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from exigo.core.errors import ExigoError
from exigo.core.registry import PROJECTIONS, EntrySettings
from exigo.data.splits import Split, batches
from exigo.evaluate.metrics import constant_features

QUALITY = ("trustworthiness", "knn_acc_2d", "knn_acc_full", "silhouette_2d", "silhouette_full")


@torch.no_grad()
def extract_features(
    model: torch.nn.Module, split: Split, batch_size: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features (N, D), predicted labels (N,)) for a whole split, batched. An exigo
    Classifier's head turns its features into logits (one pass); a wrapped timm or user model
    runs its own forward for them."""
    model.eval()
    head = model.head if isinstance(getattr(model, "head", None), torch.nn.Module) else None
    feats, preds = [], []
    for x, _ in batches(split, batch_size, device):
        f = model.features(x)
        feats.append(f.float().flatten(1).cpu())
        logits = head(f) if head is not None else model(x)
        preds.append(logits.argmax(1).cpu())
    return torch.cat(feats).numpy(), torch.cat(preds).numpy()


def project(
    x: np.ndarray, method: str, seed: int, settings: EntrySettings | None = None
) -> np.ndarray:
    """(N, D) -> (N, 2) with the registered projection `method` (its default settings when None);
    deterministic for a seed."""
    entry = PROJECTIONS.get(method)
    return entry.target(np.asarray(x, dtype=np.float32), settings or entry.parse(), seed)


def knn_accuracy(x: np.ndarray, labels: np.ndarray, k: int, folds: int, seed: int) -> float:
    """Mean accuracy of a k-NN classifier under stratified k-fold cross-validation."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = max(2, min(folds, int(np.bincount(labels).min())))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(KNeighborsClassifier(n_neighbors=k), x, labels, cv=cv).mean())


def quality(
    high: np.ndarray, low: np.ndarray, labels: np.ndarray, k: int, folds: int, seed: int
) -> dict[str, float]:
    """Trustworthiness (k neighbours), k-NN accuracy in 2-D and in full space, silhouette."""
    from sklearn.manifold import trustworthiness
    from sklearn.metrics import silhouette_score

    k = min(k, len(labels) // 2 - 1)
    return {
        "trustworthiness": float(trustworthiness(high, low, n_neighbors=k)),
        "knn_acc_2d": knn_accuracy(low, labels, k, folds, seed),
        "knn_acc_full": knn_accuracy(high, labels, k, folds, seed),
        "silhouette_2d": float(silhouette_score(low, labels)),
        "silhouette_full": float(silhouette_score(high, labels)),
    }


def pick_points(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of `n` points (all if None), stratified by label and sorted; seeded."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    _, keep = train_test_split(
        np.arange(len(labels)), test_size=n, stratify=labels, random_state=seed
    )
    return np.sort(keep)


def map_space(
    x: np.ndarray,
    labels: np.ndarray,
    method: str,
    settings: EntrySettings,
    seed: int,
    k: int,
    folds: int,
) -> tuple[np.ndarray, dict[str, float | None]]:
    """The 2-D map of one feature space and its quality numbers. Constant features (a model whose
    ReLUs all died, or one that learned nothing) have no map: zeros, and None for every number."""
    if constant_features(x):
        return np.zeros((len(x), 2), dtype=np.float32), dict.fromkeys(QUALITY)
    xy = project(x, method, seed, settings)
    return xy, quality(x, xy, labels, k, folds, seed)


def read_map(path: Path | str, made_by: str) -> np.ndarray:
    """(N, 2) map coordinates from a CSV with x, y columns (what write_map wrote)."""
    path = Path(path)
    try:
        xy = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1), dtype=np.float32, ndmin=2)
    except FileNotFoundError:
        raise ExigoError(
            f"{path}: missing; run the {made_by} stage first (dvc repro {made_by})"
        ) from None
    except ValueError as exc:
        raise ExigoError(f"{path}: unreadable ({exc}); run dvc repro {made_by} again") from None
    return xy
