"""Write the Vega bundle that lets `dvc plots show/diff` pages render with no network.

python -m stages.vega_bundle    # writes .exigo/vega.js, loaded by .dvc/plots/page.html
"""

from __future__ import annotations

from exigo.core.errors import run_stage
from exigo.core.outputs import write_bytes
from exigo.views.vega import BUNDLE_PATH, vega_bundle


def main() -> None:
    js = vega_bundle()
    write_bytes(BUNDLE_PATH, js.encode())
    print(f"wrote {BUNDLE_PATH} ({len(js) / 1e6:.1f} MB): dvc plots show/diff render offline")


if __name__ == "__main__":
    run_stage(main)
