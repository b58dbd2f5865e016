"""tsne: openTSNE's FFT-accelerated t-SNE, after PCA to pca_dims; the default."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from exigo.core.fields import Float, Int
from exigo.core.registry import PROJECTIONS, EntrySettings

if TYPE_CHECKING:
    import numpy as np


class TsneSettings(EntrySettings):
    perplexity: Float = Field(30.0, ge=2, le=100, description="t-SNE's perplexity")
    pca_dims: Int = Field(50, ge=2, description="PCA to this many dimensions first")


@PROJECTIONS.register("tsne", TsneSettings)
def project(x: np.ndarray, settings: TsneSettings, seed: int) -> np.ndarray:
    """(N, D) -> (N, 2); the perplexity is capped at openTSNE's limit for small sets."""
    import numpy as np
    from openTSNE import TSNE
    from sklearn.decomposition import PCA

    dims = min(settings.pca_dims, x.shape[1], x.shape[0])
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(x) if dims < x.shape[1] else x
    perplexity = min(settings.perplexity, (len(x) - 1) / 3)  # openTSNE's limit for small sets
    # One thread: deterministic, and immune to the stalls that a busy second core causes in
    # openTSNE's thread barriers (measured: 2 threads were no faster on 2 cores).
    tsne = TSNE(perplexity=perplexity, random_state=seed, n_jobs=1, verbose=False)
    return np.asarray(tsne.fit(np.ascontiguousarray(reduced, dtype=np.float64)), dtype=np.float32)
