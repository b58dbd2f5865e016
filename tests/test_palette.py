"""One class palette: the matplotlib figures and every DVC plot template that colours by class
or by curve use the same colours, in class-index order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from exigo.views import figures as plotting
from exigo.views.palette import CLASS_COLOURS, class_colour

TEMPLATES = Path(__file__).resolve().parents[1] / ".dvc" / "plots"


def test_every_coloured_template_uses_the_class_palette():
    coloured = {}
    for path in sorted(TEMPLATES.glob("*.json")):
        spec = json.loads(path.read_text())
        encoding = spec.get("spec", spec).get("encoding", {})
        if "color" in encoding and "field" in encoding["color"]:
            coloured[path.name] = encoding["color"]["scale"].get("range")
    assert {"scatter_class.json", "lines.json", "epochs.json"} <= set(coloured)
    for name, colours in coloured.items():
        assert colours == list(CLASS_COLOURS), name
    # The scatter orders its classes by index (the `label` column), as the figures do.
    scatter = json.loads((TEMPLATES / "scatter_class.json").read_text())
    assert scatter["spec"]["encoding"]["color"]["sort"]["field"] == "class_index"


def test_the_embedding_figure_colours_class_i_with_palette_colour_i(tmp_path, monkeypatch):
    seen = {}

    def keep(path, fig, **kw):
        for collection in fig.axes[0].collections:
            seen[collection.get_label()] = collection.get_facecolor()[0]

    monkeypatch.setattr(plotting, "save_figure", keep)
    classes = tuple(f"c{i}" for i in range(12))
    labels = np.arange(24) % 12
    xy = np.random.default_rng(0).normal(size=(24, 2))
    plotting.plot_embeddings({"learned": xy}, labels, classes, tmp_path / "e.png")
    import matplotlib.colors as mcolors

    for i, name in enumerate(classes):
        assert mcolors.to_hex(seen[name]) == class_colour(i)
