"""The documentation's figures and numbers, from a real pipeline run.

    python docs/figures.py /tmp/docs-run            # a project folder after `dvc repro`
    python docs/figures.py /tmp/docs-run --took "6 min 3 s"   # also record the repro's wall time

Writes into docs/img/: the run's own PNGs (confusion matrix, saliency figures, embedding map)
scaled to fit a page; the `accuracy`, `deletion` and `insertion` DVC plots rendered to PNG with
vl-convert, as `exigo compare` renders them; and a screenshot of TensorBoard's projector over the
run's logs/, taken in headless Chromium with every request outside 127.0.0.1 blocked. Writes
docs/run.json: the run's params, headline and detail numbers and the machine, which the pages
quote through docs/hooks.py. Run it on the machine that ran the pipeline.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from PIL import Image

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
IMG = DOCS / "img"
RUN_JSON = DOCS / "run.json"
WIDTH = 1000  # px; Material's content column is about 800 CSS px wide
COPIES = {  # docs/img name: the run's file
    "confusion.png": "plots/evaluate/images/confusion.png",
    "gradient.png": "plots/saliency/images/gradient.png",
    "methods.png": "plots/saliency/images/methods.png",
    "embedding.png": "plots/embed/images/embedding.png",
}
PLOTS = ("accuracy", "deletion", "insertion")  # DVC plot ids in dvc.yaml
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def save_png(image: Image.Image, name: str, width: int = WIDTH) -> Path:
    """Scale to at most `width` px wide and save as a 256-colour PNG (small, still sharp)."""
    image = image.convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    path = IMG / name
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def copy_images(project: Path) -> list[Path]:
    out = []
    for name, rel in COPIES.items():
        with Image.open(project / rel) as image:
            out.append(save_png(image, name))
    return out


def render_plots(project: Path) -> list[Path]:
    """The DVC plots as `dvc plots show` draws them, rendered offline with vl-convert."""
    sys.path.insert(0, str(ROOT / "src"))
    from exigo.views.vega import vegalite_png

    with tempfile.TemporaryDirectory() as tmp:
        raw = subprocess.run(
            ["dvc", "plots", "show", "--json", "-o", tmp],
            cwd=project,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    plots = json.loads(raw)["data"]
    out = []
    for plot_id in PLOTS:
        (entry,) = [e for e in plots[plot_id] if e.get("type") == "vega"]
        png = vegalite_png(entry["content"], scale=1.5)
        with Image.open(io.BytesIO(png)) as image:
            out.append(save_png(image, f"{plot_id}.png", width=800))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def projector_screenshot(project: Path, timeout: float = 120) -> Path:
    """TensorBoard's projector over the run's logs/, in headless Chromium, then TensorBoard stopped."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", "logs"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/data/plugin/projector/runs", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"tensorboard did not answer on {base}") from None
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.route(
                    "**/*",
                    lambda route: (
                        route.continue_() if route.request.url.startswith(base) else route.abort()
                    ),
                )
                # The thumbnails are the last thing the projector fetches: then let it draw.
                sprite = "/data/plugin/projector/sprite_image"
                with page.expect_response(lambda r: sprite in r.url, timeout=timeout * 1000):
                    page.goto(f"{base}/#projector")
                page.wait_for_timeout(5000)
                shot = page.screenshot()
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with Image.open(io.BytesIO(shot)) as image:
        return save_png(image, "projector.png")


def _read(project: Path, rel: str) -> dict:
    return json.loads((project / rel).read_text())


def run_numbers(project: Path, took: str | None) -> dict:
    """What the pages quote from the run: its params, numbers and machine."""
    cpu = ""
    flags: set[str] = set()
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    import torch

    saliency = _read(project, "metrics/detail/saliency.json")
    return {
        "params": yaml.safe_load((project / "params.yaml").read_text()),
        "took": took,
        "machine": {
            "cpu": cpu or platform.processor(),
            "cores": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in flags,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "train": _read(project, "metrics/train/metrics.json"),
        "evaluate": _read(project, "metrics/evaluate.json"),
        "saliency": _read(project, "metrics/saliency.json"),
        "saliency_detail": {k: v for k, v in saliency.items() if k != "randomization_cascade"},
        "embed_detail": _read(project, "metrics/detail/embed.json"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a project folder after `dvc repro`")
    parser.add_argument("--took", help="the wall time of its `dvc repro`, to quote")
    parser.add_argument("--no-projector", action="store_true", help="skip the screenshot")
    args = parser.parse_args()
    project = args.project.resolve()
    IMG.mkdir(exist_ok=True)
    written = copy_images(project) + render_plots(project)
    if not args.no_projector:
        written.append(projector_screenshot(project))
    RUN_JSON.write_text(json.dumps(run_numbers(project, args.took), indent=2) + "\n")
    for path in [*written, RUN_JSON]:
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size / 1000:.0f} kB")


if __name__ == "__main__":
    main()
