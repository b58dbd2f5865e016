"""One class palette for every figure: matplotlib PNGs and DVC's plot templates alike.

Class i is `CLASS_COLOURS[i % 20]`: matplotlib's tab10 for the first ten classes (the colours
people know), tab20's light shades for the next ten. The templates in `.dvc/plots/` list the same
colours as their scale's range and order classes by index (`label`), so a class has one colour in
`embedding.png` and in `dvc plots show` (tests/test_palette.py checks that they agree).
"""

from __future__ import annotations

CLASS_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip


def class_colour(index: int) -> str:
    """The colour of class `index` (classes past 20 reuse the palette)."""
    return CLASS_COLOURS[index % len(CLASS_COLOURS)]
