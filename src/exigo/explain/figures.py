"""Saliency figures: grids of H x W maps, one shared colour scale (and colour bar) per row.

A figure is one or more panels side by side (for example before / after training); each panel is
a grid of rows x columns. Signed maps use a diverging scale centred on zero, grey source images a
grey one; colour source images are shown in colour, and every map row of a colour dataset is
drawn over a faded grey copy of its image, so a map's place on the picture reads at a glance. The figure size follows from the grid alone (`grid_figsize`), so a PNG's pixel size says
how many rows and columns it holds.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exigo.core.outputs import save_figure
from exigo.core.registry import SALIENCY_METHODS
from exigo.views.figures import plt

CELL = 1.0  # inches per map, whatever its pixel size
MARGIN_W = 2.0  # row labels and the colour bar, per panel
MARGIN_H = 0.9  # titles
DPI = 100
GAP = 3  # blank pixels between two maps of a row
GREY_ROWS = frozenset({"source", "mean image"})
# Row labels that say what a row is, in lines that fit one map's height.
LABELS = {
    "source": "image",
    "baseline": "gradient at\nan empty\nimage",
    "saliency": "gradient at\nthe image",
    "delta": "difference\n(image −\nempty)",
    "overlay": "difference\n× image",
}
LABEL_SIZE = 9


@dataclass
class Row:
    """One row of a grid: a label, maps (n_cols, H, W) (or colour images (n_cols, H, W, 3) in
    [0, 1]), and a scale key shared by the rows that must be compared on one colour scale
    (default: the row alone)."""

    label: str
    maps: np.ndarray
    scale: str | None = None
    grey: bool = False
    notes: dict[int, str] = field(default_factory=dict)  # column -> text drawn over its map
    underlay: np.ndarray | None = None  # (n_cols, H, W) grey images in [0, 1] under the maps

    @property
    def rgb(self) -> bool:
        return self.maps.ndim == 4


@dataclass
class Panel:
    title: str
    rows: list[Row]
    columns: Sequence[str] = field(default_factory=list)


def grid_figsize(
    n_rows: int, n_cols: int, n_panels: int = 1, stacked: bool = False
) -> tuple[float, float]:
    """Figure size in inches for panels of n_rows x n_cols maps, side by side or stacked."""
    width, height = n_cols * CELL + MARGIN_W, n_rows * CELL + MARGIN_H
    return (width, n_panels * height) if stacked else (n_panels * width, height)


def _limits(panel: Panel) -> dict[str, tuple[float, float]]:
    """(vmin, vmax) per scale key: [0, max] for grey rows and for maps that are never negative
    (Grad-CAM), symmetric around 0 for signed maps."""
    peaks: dict[str, float] = {}
    signed: dict[str, bool] = {}
    for i, row in enumerate(panel.rows):
        if row.rgb:
            continue
        key = row.scale or f"row{i}"
        peaks[key] = max(peaks.get(key, 0.0), float(np.abs(row.maps).max(initial=0.0)))
        signed[key] = signed.get(key, False) or bool((row.maps < 0).any())
    return {
        key: (-(peaks[key] or 1.0), peaks[key] or 1.0) if signed[key] else (0.0, peaks[key] or 1.0)
        for key in peaks
    }


def mosaic(maps: np.ndarray, n_cols: int, gap: int = GAP) -> np.ndarray:
    """(n, h, w) maps side by side in one image, NaN (drawn blank) in the gaps and the empty cells:
    one imshow per row instead of one axes per map keeps a figure of 100 maps quick to draw."""
    n, h, w = maps.shape[:3]
    fill = 1.0 if maps.ndim == 4 else np.nan  # colour images: white gaps
    out = np.full((h, n_cols * (w + gap) - gap, *maps.shape[3:]), fill)
    for i in range(n):
        out[:, i * (w + gap) : i * (w + gap) + w] = maps[i]
    return out


def plot_grids(panels: Sequence[Panel], path: Path, title: str, stacked: bool = False) -> None:
    """Panels side by side (or stacked), each a grid of maps (one mosaic per row) with one colour
    bar per row."""
    n_rows = max(len(p.rows) for p in panels)
    n_cols = max(max(len(r.maps) for r in p.rows) for p in panels)
    size = grid_figsize(n_rows, n_cols, len(panels), stacked)
    fig = plt.figure(figsize=size, layout="constrained")
    # wrapped to the figure's width: a grid of a few columns is narrower than its title
    fig.suptitle(textwrap.fill(title, width=max(24, int(size[0] * 10))), fontsize=12)
    shape = (len(panels), 1) if stacked else (1, len(panels))
    subfigs = np.atleast_1d(fig.subfigures(*shape, wspace=0.04, hspace=0.04)).ravel()
    for sub, panel in zip(subfigs, panels, strict=True):
        sub.suptitle(panel.title, fontsize=11)
        axes = sub.subplots(n_rows, 1, squeeze=False)[:, 0]
        limits = _limits(panel)
        for r, ax in enumerate(axes):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            if r >= len(panel.rows):
                continue
            row = panel.rows[r]
            h, w = row.maps.shape[1:3]
            if row.rgb:
                image = ax.imshow(mosaic(row.maps, n_cols), aspect="equal", interpolation="nearest")
            else:
                vmin, vmax = limits[row.scale or f"row{r}"]
                name = "gray_r" if row.grey else "RdBu_r" if vmin < 0 else "Reds"
                cmap = plt.get_cmap(name).with_extremes(bad="white")
                alpha = None
                if row.underlay is not None:  # the image, faded, beneath the map
                    faded = 0.55 + 0.45 * mosaic(row.underlay, n_cols)
                    ax.imshow(faded, cmap="gray", vmin=0, vmax=1, aspect="equal",
                              interpolation="nearest")  # fmt: skip
                    alpha = 0.7
                image = ax.imshow(
                    mosaic(row.maps, n_cols), cmap=cmap, vmin=vmin, vmax=vmax, aspect="equal",
                    interpolation="nearest", alpha=alpha,
                )  # fmt: skip
            ax.set_ylabel(row.label, fontsize=LABEL_SIZE, rotation=0, ha="right", va="center")
            for c, note in row.notes.items():
                ax.text(c * (w + GAP) + (w - 1) / 2, (h - 1) / 2, note, ha="center", va="center",
                        fontsize=6, color="0.3")  # fmt: skip
            if r == 0 and panel.columns:
                ax.xaxis.tick_top()
                ax.set_xticks(
                    [c * (w + GAP) + (w - 1) / 2 for c in range(len(panel.columns))],
                    panel.columns, fontsize=8,
                )  # fmt: skip
                ax.tick_params(length=0)
            bar = sub.colorbar(image, ax=ax, shrink=0.9, aspect=6, pad=0.01)
            bar.ax.tick_params(labelsize=7)
            bar.ax.yaxis.set_major_formatter("{x:.2g}")
            if row.rgb:  # colour images have no scale; the bar keeps the rows aligned
                bar.ax.set_visible(False)
    save_figure(path, fig, dpi=DPI)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


# A method whose maps can be blank for a reason (Grad-CAM's) says so on every figure, by one rule:
# a map whose peak is below BLANK_SHARE of its row's peak (it would look empty on the row's
# colour scale) carries the method's `blank_note`.
BLANK_SHARE = 0.05


def _label(name: str) -> str:
    """A row's label: ours for the fixed rows, else the method's name, one word per line."""
    return LABELS.get(name, name.replace("_", "\n"))


def _notes(label: str, maps: np.ndarray) -> dict[int, str]:
    note = SALIENCY_METHODS.get(label).target.blank_note if label in SALIENCY_METHODS else None
    if not note or not len(maps):
        return {}
    peaks = np.abs(maps).reshape(len(maps), -1).max(1)
    blank = peaks < BLANK_SHARE * peaks.max(initial=0) if peaks.max(initial=0) > 0 else peaks == 0
    return {int(c): note for c in np.flatnonzero(blank)}


def _image_row(images) -> tuple[np.ndarray, np.ndarray | None]:
    """Source images (n, C, H, W) (or grey (n, H, W)) in [0, 1] -> (what the row shows, the grey
    underlay for the map rows: None for grey images, whose maps read well on their own)."""
    images = _np(images)
    if images.ndim == 3 or images.shape[1] == 1:
        return images.reshape(len(images), *images.shape[-2:]), None
    return images.transpose(0, 2, 3, 1).clip(0, 1), images.mean(1)


def _rows(rows: dict, absent: Sequence[int] = ()) -> list[Row]:
    """Rows of images and maps; the `absent` columns have no image (a class with none) and say
    so on every map, instead of a method's blank-map note."""
    out, underlay = [], None
    for label, maps in rows.items():
        if label in GREY_ROWS:
            shown, underlay = _image_row(maps)
            out.append(Row(_label(label), shown, grey=True))
            continue
        values = _np(maps)
        notes = {c: n for c, n in _notes(label, values).items() if c not in absent}
        notes |= {int(c): "no image" for c in absent}
        out.append(Row(_label(label), values, notes=notes, underlay=underlay))
    return out


def plot_before_after(
    before: dict,
    after: dict,
    columns_before: Sequence[str],
    columns_after: Sequence[str],
    path: Path,
    title: str,
) -> None:
    """The same rows for the untrained and the trained model, side by side. Each half's columns
    carry its own model's prediction; its title states its gradient scale, which differs by
    orders of magnitude between an untrained and a trained network."""

    def scale(rows: dict) -> str:
        peak = float(np.abs(_np(rows["saliency"])).max(initial=0.0)) if "saliency" in rows else 0
        return f", gradients within ±{peak:.2g}" if peak else ""

    panels = [
        Panel(f"before training (initial weights){scale(before)}", _rows(before), columns_before),
        Panel(f"after training{scale(after)}", _rows(after), columns_after),
    ]
    plot_grids(panels, path, title, stacked=True)  # one page wide: readable on a slide


def plot_methods(
    source,
    maps: dict,
    columns: Sequence[str],
    path: Path,
    title: str,
    source_label: str = "source",
    absent: Sequence[int] = (),
) -> None:
    """A source row, then one row per method (`absent`: columns with no image behind them)."""
    rows = _rows({source_label: source, **maps}, absent)
    plot_grids([Panel("", rows, columns)], path, title)


def plot_pairs(
    source, true_maps: dict, pred_maps: dict, columns: Sequence[str], path: Path, title: str
) -> None:
    """Per confused pair (a column): the image, then each method's map for the true class and for
    the predicted class, the two on one colour scale."""
    shown, underlay = _image_row(source)
    rows = [Row(_label("source"), shown, grey=True)]
    for m in true_maps:
        for maps, which in ((true_maps[m], "true class"), (pred_maps[m], "predicted")):
            values = _np(maps)
            rows.append(
                Row(f"{_label(m)}\n({which})", values, scale=m, notes=_notes(m, values),
                    underlay=underlay)
            )  # fmt: skip
    plot_grids([Panel("", rows, columns)], path, title)
