"""Comparing experiments: the report, offline `dvc plots diff`, queued sweeps, and the web UIs
(DVC's plots page, `mlflow ui`, TensorBoard's projector) checked in a real headless Chromium."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, dvc, init_repo, make_env, make_project, mlflow_runs, sh, tiny_params
from PIL import Image

from exigo.core.envvars import read_env

DEEP_TEXT = """(() => {
  const out = [];
  const walk = (node) => {
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) {
      if (child.nodeType === 3) out.push(child.textContent);
      else if (!["STYLE", "SCRIPT"].includes(child.nodeName)) walk(child);
    }
  };
  walk(document.body);
  return out.join(" ");
})"""
SCREENSHOTS = ROOT / "artifacts" / "screenshots"  # git-ignored; CI keeps them as artifacts
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def experiments(tmp_path_factory, tiny_idx):
    """A repo with a committed baseline and one experiment `lr-high`."""
    tmp = tmp_path_factory.mktemp("compare")
    env = make_env(tmp)
    data = {
        "name": "idx",
        "source": str(tiny_idx.folder),
        "idx": {"sha256": tiny_idx.payload_sha256},
    }
    project = init_repo(make_project(tmp / "exigo-cmp", tiny_params(data=data)), env)
    dvc("repro", cwd=project, env=env)
    sh(["git", "add", "dvc.lock", "metrics", "plots"], project, env)
    sh(["git", "commit", "-qm", "baseline"], project, env)
    dvc("exp", "run", "-S", "train.lr=0.02", "--name", "lr-high", cwd=project, env=env)
    return project, env


@pytest.mark.slow
def test_report_holds_both_revisions(experiments):
    project, env = experiments
    out = sh(
        [shutil.which("exigo"), "compare", "HEAD", "lr-high", "-o", "report"], project, env
    ).stdout
    assert "HEAD vs lr-high" in out
    report = project / "report"
    md = (report / "report.md").read_text()
    assert "train.lr" in md and "0.01" in md and "0.02" in md  # the params diff
    assert "metrics/evaluate.json" in md and "loss" in md and "HEAD" in md and "lr-high" in md
    for chart in ("loss", "accuracy", "confusion_normalized"):
        with Image.open(report / "plots" / f"{chart}.png") as img:
            assert img.width > 200 and img.height > 100
    for rev in ("HEAD", "lr-high"):
        for image in ("confusion.png", "embedding.png", "mistakes.png"):
            assert list((report / "images" / rev).glob(f"*{image}")), (rev, image)
    html = (report / "report.html").read_text()
    assert html.count("<img") >= 3 + 2 * 4 and "lr-high" in html
    assert not re.search(r"\d\.\d{7,}", md + html)  # no float noise in the tables
    assert "## Detail" in md and "metrics/detail/evaluate.json" in md  # untracked detail, diffed

    # A revision without results (the commit before the baseline) is named, with what to run.
    result = sh(
        [shutil.which("exigo"), "compare", "HEAD~1", "lr-high", "-o", "report2"], project, env
    )
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "HEAD~1 has no results" in warnings[0], result.stderr
    assert "git commit -m baseline" in warnings[0]
    assert "HEAD~1" in (project / "report2" / "report.md").read_text().split("## Params")[0]


def test_report_tables_have_no_float_noise_and_follow_the_pipeline():
    from exigo.compare.report import HEADLINE_FILES, _fmt, _rows

    assert _fmt(-0.006110999999999776) == "-0.0061"
    assert _fmt(0.99283) == "0.9928" and _fmt(421642) == "421642" and _fmt(5.0) == "5"
    assert _fmt(None) == "—" and _fmt(3.2e-05) == "3.20e-05" and _fmt("cnn") == "cnn"
    diff = {
        "metrics/embed.json": {"knn_acc_2d": {"old": 0.9, "new": 0.95, "diff": 0.05}},
        "metrics/evaluate.json": {"accuracy": {"old": 0.97, "new": 0.98, "diff": 0.01}},
        "metrics/train/metrics.json": {"val_acc": {"old": 0.96, "new": 0.97, "diff": 0.01}},
    }
    files = [row.file for row in _rows(diff, HEADLINE_FILES)]
    assert files == ["metrics/train/metrics.json", "metrics/evaluate.json", "metrics/embed.json"]


def test_report_rows_read_as_quantities_and_labels():
    """Class IDs are labels (no numeric change), a row has one number format, the largest
    relative changes come first and unchanged values last; the summary leads with params."""
    from exigo.compare.report import Report, _rows, summary

    detail = {
        "metrics/detail/evaluate.json": {
            "confused.top2.predicted": {"old": 0, "new": 9, "diff": 9},
            "per_class.3.recall": {"old": 0.9, "new": 0.95, "diff": 0.05},
            "per_class.4.recall": {"old": 0.8, "new": 0.96, "diff": 0.16},
            "per_class.5.recall": {"old": 0.9, "new": 0.9, "diff": 0},
            "confused.top1.count": {"old": 12, "new": 7, "diff": -5},
        }
    }
    rows = {row.key: row for row in _rows(detail)}
    assert rows["confused.top2.predicted"].cells()[2:] == ("0", "9", "")
    assert rows["per_class.4.recall"].cells()[2:] == ("0.8000", "0.9600", "+0.1600")
    assert rows["confused.top1.count"].cells()[2:] == ("12", "7", "-5")
    order = [row.key for row in _rows(detail)]
    assert order.index("confused.top1.count") < order.index("per_class.4.recall")  # -42 % first
    assert order[-1] == "per_class.5.recall"  # unchanged, last
    params = {"params.yaml": {"train.weight_decay": {"old": 1e-4, "new": 1e-3}}}
    (row,) = _rows(params)
    assert row.cells()[2:] == ("0.0001", "0.001", "+0.0009")  # one format, no 1.00e-04
    metrics = {"metrics/evaluate.json": {"accuracy": {"old": 0.97, "new": 0.98, "diff": 0.01}}}
    report = Report(["HEAD", "exp"], params=[("t", params)], metrics=[("t", metrics)])
    assert [line.key for line in summary(report)] == ["train.weight_decay", "accuracy"]


def _browser():
    if not Path(CHROMIUM).exists():
        if read_env().EXIGO_REQUIRE_BROWSER:
            pytest.fail(f"no Chromium at {CHROMIUM}; .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    return sync_playwright()


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], url: str, cwd: Path, env: dict, timeout: float = 120):
    """Start a server, wait until `url` answers, stop it afterwards."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{' '.join(cmd[:3])} did not answer {url}")
                time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _offline(route) -> None:
    """Let file:// requests through; anything else fails, as it would on an offline machine."""
    if route.request.url.startswith("file:"):
        route.continue_()
    else:
        route.abort()


@contextlib.contextmanager
def chromium_page():
    """A page in Debian's headless Chromium, driven by Playwright."""
    with _browser() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def _render_charts(page, html: Path, expected: int, shot: str) -> list[float]:
    """Open a `dvc plots` page with every non-file request blocked; the widths of its charts."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(html.as_uri())
    charts = ".vega-embed canvas, .vega-embed svg.marks"
    page.wait_for_function(
        f"document.querySelectorAll('{charts}').length >= {expected}", timeout=60_000
    )
    sizes = page.eval_on_selector_all(
        charts, "els => els.map(e => e.getBoundingClientRect().width)"
    )
    _shot(page, shot)
    assert not errors, errors
    return sizes


def test_plots_page_works_before_the_bundle_exists(tmp_path):
    """`dvc plots show` in a repo where `.exigo/vega.js` was never written (a fresh clone): our
    page still renders, with DVC's CDN tags as the fallback and the offline note."""
    env = make_env(tmp_path)
    project = tmp_path / "fresh"
    (project / "plots").mkdir(parents=True)
    (project / "plots" / "history.csv").write_text("epoch,loss\n1,0.5\n2,0.3\n")
    (project / "dvc.yaml").write_text(
        "plots:\n  - plots/history.csv:\n      x: epoch\n      y: loss\n"
    )
    init_repo(project, env)
    dvc("plots", "show", "-o", "page", cwd=project, env=env)
    html = (project / "page" / "index.html").read_text()
    assert '<script src="../.exigo/vega.js"></script>' in html
    assert "cdn.jsdelivr.net/npm/vega@" in html and 'id="no-vega"' in html
    assert "vegaEmbed(" in html


@pytest.mark.slow
def test_dvc_plots_diff_renders_offline_in_chromium(experiments):
    project, env = experiments
    dvc("plots", "diff", "HEAD", "lr-high", "-o", "plots_page", cwd=project, env=env)
    page_html = (project / "plots_page" / "index.html").read_text()
    assert '<script src="../.exigo/vega.js"></script>' in page_html  # the bundle dvc repro wrote
    expected = page_html.count("vegaEmbed(")
    assert expected >= 5
    requested: list[str] = []
    with chromium_page() as page:
        page.route("**/*", lambda route: (requested.append(route.request.url), _offline(route)))
        sizes = _render_charts(
            page, project / "plots_page" / "index.html", expected, "dvc-plots-diff"
        )
        assert not page.is_visible("#no-vega")
    assert len(sizes) >= expected and min(sizes) > 50
    assert all(url.startswith("file:") for url in requested), requested  # no CDN was needed


@pytest.mark.slow
def test_fresh_clone_plots_page_needs_no_extra_step(experiments, tmp_path):
    """A clone has no .exigo/vega.js: the page falls back to DVC's CDN, and offline it says what
    to run; after `dvc repro vega_bundle` it renders offline."""
    project, env = experiments
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(project), str(clone)], tmp_path, env)
    assert not (clone / ".exigo").exists()
    dvc("plots", "show", "-o", "page", cwd=clone, env=env)  # works with no step first
    html = clone / "page" / "index.html"
    assert "cdn.jsdelivr.net/npm/vega@" in html.read_text()  # DVC's own tags, as the fallback
    expected = html.read_text().count("vegaEmbed(")
    requested: list[str] = []
    with chromium_page() as page:
        page.route("**/*", lambda route: (requested.append(route.request.url), _offline(route)))
        page.goto(html.as_uri())
        page.locator("#no-vega").wait_for(state="visible", timeout=30_000)
        note = page.inner_text("#no-vega")
        _shot(page, "dvc-plots-fresh-clone-offline")
    assert "dvc repro vega_bundle" in note
    assert any("cdn.jsdelivr.net" in url for url in requested)  # it did try DVC's CDN

    dvc("repro", "vega_bundle", cwd=clone, env=env)
    dvc("plots", "show", "-o", "page", cwd=clone, env=env)
    with chromium_page() as page:
        page.route("**/*", _offline)
        sizes = _render_charts(page, html, expected, "dvc-plots-fresh-clone-bundle")
    assert len(sizes) >= expected


RUNS_LIST_COLUMNS = ("evaluate.accuracy", "train.val_acc", "train.lr")  # as docs/mlflow.md


@pytest.mark.slow
def test_mlflow_ui_lists_runs_and_shows_a_run(experiments):
    project, env = experiments
    run, exp_run = mlflow_runs(project)[-2:]
    base = f"http://127.0.0.1:{_free_port()}"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        f"sqlite:///{project / 'mlflow.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        base.rsplit(":", 1)[1],
        "--workers",
        "1",
    ]
    experiment = f"{base}/#/experiments/{exp_run.info.experiment_id}"
    mode = "?workflowType=machine_learning"  # what the links track prints and the README carry
    runs_page = f"{experiment}/runs"
    with serving(cmd, f"{base}/health", project, env), chromium_page() as page:
        # A new browser (no mode chosen yet) opening the experiment lands on its training runs,
        # not on the GenAI overview MLflow 3.17 opens by default.
        page.goto(f"{experiment}{mode}")
        page.get_by_text("lr-high").first.wait_for(timeout=60_000)
        page.get_by_text(run.info.run_name).first.wait_for(timeout=60_000)
        assert "/runs?" in page.url and "workflowType=machine_learning" in page.url, page.url
        # What docs/mlflow.md tells a user to do once: close the Assistant MLflow 3.17 opens on a
        # local server's first visit, and pick the runs list's columns (MLflow shows none of a
        # run's metrics or params until asked, then remembers the choice in the browser).
        page.get_by_placeholder("Ask a question").wait_for(timeout=60_000)
        page.get_by_role("button", name="Close").click()
        page.get_by_role("button", name="Columns").click()
        for column in ("Source", "Models", *RUNS_LIST_COLUMNS):  # off, then on: room at 1,400 px
            page.get_by_text(column, exact=True).last.click()
        page.keyboard.press("Escape")
        header = page.locator(".ag-header").inner_text()
        rows: dict[str, dict[str, str]] = {}  # run id -> column id -> the cell's text
        for row in page.locator(".ag-row").all():
            for cell in row.locator("[col-id]").all():
                rows.setdefault(row.get_attribute("row-id"), {})[cell.get_attribute("col-id")] = (
                    cell.inner_text()
                )
        assistant_open = page.get_by_placeholder("Ask a question").count()
        _shot(page, "mlflow-runs")
        page.goto(f"{runs_page}/{exp_run.info.run_id}{mode}")  # the run, as track links it
        page.get_by_text("train.lr").first.wait_for(timeout=60_000)
        body = page.inner_text("body")
        _shot(page, "mlflow-run")
        page.goto(f"{runs_page}/{exp_run.info.run_id}/artifacts")
        page.get_by_text("checkpoint").first.wait_for(timeout=60_000)
        artifacts = page.inner_text("body")
        _shot(page, "mlflow-artifacts")
    assert "train.lr" in body and "0.02" in body and "evaluate.accuracy" in body
    assert all(column in header for column in RUNS_LIST_COLUMNS), header
    assert "Source" not in header and "Models" not in header, header
    for logged in (run, exp_run):  # each run's own numbers in its own row, and the data it read
        row = rows[logged.info.run_id]
        assert row["params.`train.lr`"] == logged.data.params["train.lr"], row  # 0.01, 0.02
        for key in ("evaluate.accuracy", "train.val_acc"):
            assert float(row[f"metrics.`{key}`"]) == pytest.approx(
                logged.data.metrics[key], abs=1e-3
            ), row
        (digest,) = [
            d.dataset.digest
            for d in logged.inputs.dataset_inputs
            if {(t.key, t.value) for t in d.tags} == {("mlflow.data.context", "training")}
        ]
        assert row["attributes.`Dataset`"].startswith(f"idx ({digest})"), row  # training first
    assert not assistant_open, "the Assistant panel stayed open"
    assert "plots" in artifacts and "metrics" in artifacts
    assert run.info.run_id != exp_run.info.run_id


@pytest.mark.slow
def test_tensorboard_projector_in_chromium(experiments):
    project, env = experiments
    base = f"http://127.0.0.1:{_free_port()}"
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        "logs",
        "--host",
        "127.0.0.1",
        "--port",
        base.rsplit(":", 1)[1],
    ]
    with serving(cmd, f"{base}/data/plugin/projector/runs", project, env), chromium_page() as page:
        page.goto(f"{base}/#projector")
        # The projector is a Polymer app in an iframe: read the text of every frame's shadow DOM.
        wanted = (
            # our tensors, named for what they are: 100 test points, the tiny model's 16-d features
            "learned features (trained model) 100x16",
            "untrained features (initial weights) 100x16",
            "Label by point class predicted correct label",  # our metadata columns
            "Points: 100",
            "Dimension: 16",
        )
        deadline, text = time.monotonic() + 90, ""
        while not all(w in text for w in wanted) and time.monotonic() < deadline:
            page.wait_for_timeout(1000)
            text = " ".join(" ".join(f.evaluate(DEEP_TEXT + "()").split()) for f in page.frames)
        page.wait_for_timeout(2000)  # let the scatter and its thumbnails draw
        _shot(page, "tensorboard-projector")
    # (the sprite thumbnails are what the screenshot shows)
    missing = [w for w in wanted if w not in text]
    assert not missing, (missing, text[-800:])


@pytest.mark.slow
def test_queued_sweep_gives_one_run_per_experiment(tmp_path, tiny_idx):
    env = make_env(tmp_path)
    data = {
        "name": "idx",
        "source": str(tiny_idx.folder),
        "idx": {"sha256": tiny_idx.payload_sha256},
    }
    project = init_repo(make_project(tmp_path / "exigo-sweep", tiny_params(data=data)), env)
    lrs = ["0.003", "0.01", "0.02", "0.05"]
    for lr in lrs:
        dvc("exp", "run", "--queue", "-S", f"train.lr={lr}", cwd=project, env=env)
    dvc("queue", "start", "-j", "2", cwd=project, env=env)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = dvc("queue", "status", cwd=project, env=env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    dvc("queue", "stop", "--kill", cwd=project, env=env, check=False)
    assert "Failed" not in status, (
        status + dvc("queue", "logs", "--help", cwd=project, env=env).stdout
    )
    shown = json.loads(dvc("exp", "show", "--json", cwd=project, env=env).stdout)
    exps = [e for base in shown for e in (base.get("experiments") or [])]
    assert len(exps) == len(lrs)
    runs = mlflow_runs(project)
    assert len(runs) == len(lrs), [r.data.tags.get("dvc.exp_name") for r in runs]
    assert sorted(r.data.params["train.lr"] for r in runs) == sorted(lrs)
    assert sorted(r.data.tags["dvc.exp_name"] for r in runs) == sorted(e["name"] for e in exps)
    assert not list(project.glob(".dvc/tmp/**/mlflow.db"))
