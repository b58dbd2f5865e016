"""Matplotlib figures: confusion matrices with true axis labels, the mistakes gallery."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from exigo.core.outputs import save_figure  # noqa: E402
from exigo.views.palette import class_colour  # noqa: E402

MAX_CELL_TEXT = 20  # classes up to which every cell prints its number (as the DVC templates)
MAX_LEGEND = 20  # classes up to which the embedding plot has a legend (one palette colour each)


def _percent(share: float) -> str:
    return f"{100 * share:.1f}" if share < 0.1 else f"{100 * share:.0f}"


def plot_confusion(
    cm: np.ndarray, classes: tuple[str, ...], path: Path, normalize: bool = False
) -> None:
    """Rows = true class, columns = predicted class. The diagonal (right answers) is grey; the
    errors are coloured on their own scale, so a 1 % confusion is visible beside a 99 % diagonal.
    Cells print their count (or % of the row) up to MAX_CELL_TEXT classes; zero cells are blank."""
    k = len(classes)
    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    errors = np.where(np.eye(k, dtype=bool) | (cm == 0), np.nan, values).astype(float)
    size = min(max(5.0, 0.45 * k + 2.2), 16.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    ax.imshow(np.where(np.eye(k, dtype=bool), 1.0, np.nan), cmap="Greys", vmin=0, vmax=4)
    peak = np.nanmax(errors) if np.isfinite(errors).any() else 1.0
    image = ax.imshow(errors, cmap="OrRd", vmin=0, vmax=peak)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)  # as tall as the matrix
    bar.set_label("errors, % of the true class" if normalize else "errors (images)")
    if normalize:
        bar.ax.yaxis.set_major_formatter(lambda v, _: _percent(v))
    else:
        from matplotlib.ticker import MaxNLocator

        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: whole numbers
    if k <= MAX_CELL_TEXT:
        for (i, j), n in np.ndenumerate(cm):
            if n == 0:
                continue
            text = _percent(values[i, j]) if normalize else f"{n:,}"
            dark = i != j and values[i, j] > 0.6 * peak
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")  # fmt: skip
    step = max(1, -(-k // 30))  # at most ~30 tick labels per axis
    ticks = np.arange(0, k, step)
    names = [classes[t] for t in ticks]
    ax.set_xticks(ticks, names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right"
                  if max(map(len, names)) > 2 else "center")  # fmt: skip
    ax.set_yticks(ticks, names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    what = "% of each true class" if normalize else f"{int(cm.sum()):,} test images"
    ax.set_title(
        f"Confusion matrix ({what})\ngrey diagonal: right answers; colour: errors", fontsize=11
    )
    fig.tight_layout()
    save_figure(path, fig, dpi=110)


def show_image(ax, image: np.ndarray) -> None:
    """One uint8 image (C, H, W) (or grey (H, W)) as people see it: RGB in colour, grey as dark
    ink on white (the way MNIST's digits read), pixels unsmoothed."""
    if image.ndim == 2:
        image = image[None]
    if image.shape[0] == 3:
        ax.imshow(image.transpose(1, 2, 0), interpolation="nearest")
    else:
        ax.imshow(image[0], cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")


def plot_mistakes(
    images: np.ndarray,  # (K, C, H, W) uint8
    true: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    classes: tuple[str, ...],
    path: Path,
) -> None:
    """A grid of the most confident mistakes: 'true -> predicted (confidence)'."""
    k = len(images)
    cols = min(6, max(k, 1))
    rows = max(1, -(-k // cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(max(1.9 * cols, 6.0), 2.2 * rows + 0.5), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i in range(k):
        ax = axes.flat[i]
        show_image(ax, images[i])
        ax.set_title(f"{classes[true[i]]} → {classes[pred[i]]}\n{confidence[i]:.0%}", fontsize=11)
    if k == 0:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=12)
    fig.suptitle("Most confident mistakes (true → predicted, confidence)", fontsize=13)
    fig.tight_layout()
    save_figure(path, fig, dpi=110)


def plot_embeddings(
    maps: dict[str, np.ndarray],  # title -> (N, 2)
    labels: np.ndarray,
    classes: tuple[str, ...],
    path: Path,
    subtitles: dict[str, str] | None = None,
) -> None:
    """Side-by-side 2-D maps coloured by true class, one shared legend. Past MAX_LEGEND classes
    a legend no longer reads (nor do 20 colours tell 100 classes apart): the points are coloured
    by class index on one continuous scale, with a colour bar."""
    n, k = len(maps), len(classes)
    many = k > MAX_LEGEND
    fig, axes = plt.subplots(1, n, figsize=(5 * n + (0.8 if many else 0), 5.4), squeeze=False)
    cmap = plt.get_cmap("turbo")
    scatter = None
    for ax, (title, xy) in zip(axes[0], maps.items(), strict=True):
        if many:
            scatter = ax.scatter(
                xy[:, 0], xy[:, 1], s=3, alpha=0.7, c=labels, cmap=cmap, vmin=0, vmax=k - 1,
                rasterized=True, linewidths=0,
            )  # fmt: skip
        else:
            for c, name in enumerate(classes):
                pts = xy[labels == c]
                ax.scatter(
                    pts[:, 0],
                    pts[:, 1],
                    s=3,
                    alpha=0.7,
                    color=class_colour(c),
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
    if many:
        fig.tight_layout(rect=(0, 0, 0.93, 1))
        bar = fig.colorbar(scatter, ax=list(axes[0]), fraction=0.02, pad=0.01)
        bar.set_label(f"true class (index 0..{k - 1}; names in the projector)")
        bar.solids.set_alpha(1)
    else:
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(
            handles,
            names,
            loc="lower center",
            ncol=min(k, 10),
            markerscale=4,
            title="true class",
            frameon=False,
        )
        fig.tight_layout(rect=(0, 0.1 if k <= 10 else 0.15, 1, 1))
    save_figure(path, fig, dpi=110)
