"""Offline rendering of DVC plots: an HTML template with Vega inlined, and PNGs via vl-convert.

DVC's default `dvc plots show/diff` page loads Vega from a CDN, so it is blank offline. The
template written here inlines Vega, Vega-Lite and Vega-Embed from the installed
`vl-convert-python` package (nothing third-party is committed), and `.dvc/config` points
`plots.html_template` at it.
"""

from __future__ import annotations

from pathlib import Path

# DVC writes Vega-Lite v5 specs; bundle the newest v5 that vl-convert ships.
VEGALITE_VERSION = "5.21"
TEMPLATE_PATH = Path(".exigo/plots_template.html")

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots (exigo, renders offline)</title>
    <!-- Vega {vega}, Vega-Lite {vegalite}, Vega-Embed {embed}: bundled by vl-convert-python {vlc} -->
    <script type="text/javascript">__BUNDLE__</script>
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def plots_template() -> str:
    """The page DVC fills with `{plot_divs}`; `{scripts}` is left out so no CDN tag goes in."""
    import vl_convert as vlc

    versions = {
        "vega": vlc.get_vega_version(),
        "vegalite": VEGALITE_VERSION,
        "embed": vlc.get_vega_embed_version(),
        "vlc": getattr(vlc, "__version__", "?"),
    }
    bundle = vlc.javascript_bundle(vl_version=VEGALITE_VERSION).replace("</script", "<\\/script")
    head = PAGE.replace("{refresh_tag}", "\x00R").replace("{plot_divs}", "\x00P")
    head = head.format(**versions).replace("\x00R", "{refresh_tag}").replace("\x00P", "{plot_divs}")
    return head.replace("__BUNDLE__", bundle)


def vegalite_png(spec: dict, scale: float = 2.0) -> bytes:
    """Render a Vega-Lite spec (as `dvc plots diff --json` gives it, data inlined) to PNG."""
    import vl_convert as vlc

    return vlc.vegalite_to_png(spec, vl_version=VEGALITE_VERSION, scale=scale)
