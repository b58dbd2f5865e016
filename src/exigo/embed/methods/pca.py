"""pca: the first two principal components (scikit-learn): linear, fast, and it keeps global
distances that t-SNE gives up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exigo.core.registry import PROJECTIONS, NoSettings

if TYPE_CHECKING:
    import numpy as np


@PROJECTIONS.register("pca")
def project(x: np.ndarray, settings: NoSettings, seed: int) -> np.ndarray:
    """(N, D) -> (N, 2)."""
    import numpy as np
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(x).astype(np.float32)
