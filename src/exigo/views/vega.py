"""Offline rendering of DVC plots: a local Vega bundle for DVC's pages, and PNGs via vl-convert.

DVC's default `dvc plots show/diff` page loads Vega from a CDN, so it is blank offline.
`.dvc/config` points `plots.html_template` at the committed page `.dvc/plots/page.html`, which
loads Vega, Vega-Lite and Vega-Embed from `.exigo/vega.js` (written here from the installed
`vl-convert-python`; nothing third-party is committed) and falls back to DVC's CDN tags.
"""

from __future__ import annotations

from pathlib import Path

# DVC writes Vega-Lite v5 specs; bundle the newest v5 that vl-convert ships.
VEGALITE_VERSION = "5.21"
BUNDLE_PATH = Path(".exigo/vega.js")  # .dvc/plots/page.html loads it as ../.exigo/vega.js


def vega_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script, from the installed vl-convert-python."""
    import vl_convert as vlc

    header = (
        f"/* Vega {vlc.get_vega_version()}, Vega-Lite {VEGALITE_VERSION}, Vega-Embed "
        f"{vlc.get_vega_embed_version()}: bundled by vl-convert-python "
        f"{getattr(vlc, '__version__', '?')} */\n"
    )
    return header + vlc.javascript_bundle(vl_version=VEGALITE_VERSION)


def vegalite_png(spec: dict, scale: float = 2.0) -> bytes:
    """Render a Vega-Lite spec (as `dvc plots diff --json` gives it, data inlined) to PNG."""
    import vl_convert as vlc

    return vlc.vegalite_to_png(spec, vl_version=VEGALITE_VERSION, scale=scale)
