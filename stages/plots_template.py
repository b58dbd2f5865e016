"""Write the HTML template that makes `dvc plots show/diff` render with no network.

python -m stages.plots_template    # writes .exigo/plots_template.html (see .dvc/config)
"""

from __future__ import annotations

from exigo.errors import run_stage
from exigo.io import write_bytes
from exigo.report import TEMPLATE_PATH, plots_template


def main() -> None:
    html = plots_template()
    write_bytes(TEMPLATE_PATH, html.encode())
    print(f"wrote {TEMPLATE_PATH} ({len(html) / 1e6:.1f} MB): dvc plots show/diff render offline")


if __name__ == "__main__":
    run_stage(main)
