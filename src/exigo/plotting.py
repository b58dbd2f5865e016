"""Matplotlib figures: confusion matrices with true axis labels, the mistakes gallery."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from exigo.io import save_figure  # noqa: E402


def plot_confusion(
    cm: np.ndarray, classes: tuple[str, ...], path: Path, normalize: bool = False
) -> None:
    """Rows = true class, columns = predicted class, with counts (or row fractions) in the cells."""
    from sklearn.metrics import ConfusionMatrixDisplay  # here: most figures need no sklearn

    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = max(6.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    disp = ConfusionMatrixDisplay(values, display_labels=list(classes))
    disp.plot(
        ax=ax,
        cmap="Blues",
        values_format=".2f" if normalize else "d",
        colorbar=True,
        xticks_rotation=45 if max(map(len, classes)) > 2 else "horizontal",
    )
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(
        "Confusion matrix, rows normalised (recall on the diagonal)"
        if normalize
        else f"Confusion matrix ({int(cm.sum()):,} test images)"
    )
    fig.tight_layout()
    save_figure(path, fig, dpi=110)


def plot_mistakes(
    images: np.ndarray,  # (K, 28, 28) uint8
    true: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    classes: tuple[str, ...],
    path: Path,
) -> None:
    """A grid of the most confident mistakes: 'true -> predicted (confidence)'."""
    k = len(images)
    cols = min(8, max(k, 1))
    rows = max(1, -(-k // cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(max(1.6 * cols, 6.0), 1.9 * rows + 0.4), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i in range(k):
        ax = axes.flat[i]
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"{classes[true[i]]} → {classes[pred[i]]}\n{confidence[i]:.0%}", fontsize=8)
    if k == 0:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle("Most confident mistakes (true → predicted, confidence)", fontsize=10)
    fig.tight_layout()
    save_figure(path, fig, dpi=110)


def plot_embeddings(
    maps: dict[str, np.ndarray],  # title -> (N, 2)
    labels: np.ndarray,
    classes: tuple[str, ...],
    path: Path,
    subtitles: dict[str, str] | None = None,
) -> None:
    """Side-by-side 2-D maps coloured by true class, one shared legend."""
    n = len(maps)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 5.4), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, (title, xy) in zip(axes[0], maps.items(), strict=True):
        for c, name in enumerate(classes):
            pts = xy[labels == c]
            ax.scatter(
                pts[:, 0],
                pts[:, 1],
                s=3,
                alpha=0.7,
                color=cmap(c % cmap.N),
                label=name,
                rasterized=True,
                linewidths=0,
            )
        ax.set_title(
            title + (f"\n{subtitles[title]}" if subtitles and title in subtitles else ""),
            fontsize=10,
        )
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="lower center",
        ncol=min(len(classes), 10),
        markerscale=4,
        title="true class",
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    save_figure(path, fig, dpi=110)
