"""`exigo compare`: one self-contained folder comparing revisions, for a pull request.

It asks DVC for what it already knows how to diff (params, metrics, plots with data inlined),
renders every Vega plot to PNG offline (vl-convert) and puts each revision's images side by side,
in `report.md` and `report.html`.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from exigo.errors import ExigoError
from exigo.io import write_bytes
from exigo.tables import DETAIL_TABLES
from exigo.utils import warn

WORKSPACE = "workspace"
# The headline metrics files in pipeline order (rows follow it), and the detail DVC does not track
# as metrics but diffs all the same when asked for them by path.
HEADLINE_FILES = (
    "metrics/train/metrics.json",
    "metrics/evaluate.json",
    "metrics/saliency.json",
    "metrics/embed.json",
)
DETAIL_FILES = tuple(DETAIL_TABLES)


def dvc(*args: str, cwd: Path) -> str:
    """Run a DVC command; a failure becomes one clear error line."""
    exe = shutil.which("dvc")
    if exe is None:
        raise ExigoError("dvc is not on PATH (pip install -e . installs it)")
    result = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        msg = (result.stderr or result.stdout).strip().splitlines()
        raise ExigoError(f"dvc {' '.join(args)}: {msg[-1] if msg else 'failed'}")
    return result.stdout


def revisions(revs: list[str]) -> list[str]:
    """DVC's semantics: no revision = HEAD vs workspace; one = it vs workspace; more = those."""
    if not revs:
        return ["HEAD", WORKSPACE]
    return [*revs, WORKSPACE] if len(revs) == 1 else list(revs)


def _diff_args(base: str, other: str) -> list[str]:
    return [base] if other == WORKSPACE else [base, other]


@dataclass
class Report:
    revs: list[str]
    params: list[tuple[str, dict]] = field(default_factory=list)  # (title, dvc --json)
    metrics: list[tuple[str, dict]] = field(default_factory=list)
    detail: list[tuple[str, dict]] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # rev -> what to run for results
    charts: dict[str, str] = field(default_factory=dict)  # plot id -> png path (relative)
    images: dict[str, dict[str, str]] = field(default_factory=dict)  # image id -> rev -> path


def _sides(diff: dict) -> tuple[bool, bool]:
    """Whether the old and the new revision of a `dvc metrics diff --json` have any value."""
    changes = [c for entries in diff.values() for c in entries.values()]
    return (
        any(c.get("old") is not None for c in changes),
        any(c.get("new") is not None for c in changes),
    )


def _what_to_run(rev: str) -> str:
    if rev == WORKSPACE:
        return "the workspace has no results: run dvc repro"
    return (
        f"{rev} has no results (no dvc.lock or metrics committed there): commit a baseline "
        "with dvc repro && git add dvc.lock metrics plots && git commit -m baseline, "
        "or compare experiments by name"
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "plot"


def build(revs: list[str], out_dir: Path, cwd: Path = Path(".")) -> Report:
    """Collect diffs and render plots for `revs` into out_dir (replaced if it exists)."""
    from exigo.report import vegalite_png

    revs = revisions(revs)
    report = Report(revs)
    _staging(out_dir).rmdir()  # a place we cannot write stops here, before any DVC command
    base = revs[0]
    for other in revs[1:]:
        title = f"{base} → {other}"
        pair = _diff_args(base, other)
        report.params.append(
            (title, json.loads(dvc("params", "diff", *pair, "--json", cwd=cwd) or "{}"))
        )
        metrics = json.loads(dvc("metrics", "diff", *pair, "--all", "--json", cwd=cwd) or "{}")
        report.metrics.append((title, metrics))
        has_old, has_new = _sides(metrics)
        for rev, has in ((base, has_old), (other, has_new)):
            if not has and rev not in report.missing:
                report.missing[rev] = _what_to_run(rev)
                warn(f"exigo compare: {report.missing[rev]}")
        detail = dvc(
            "metrics", "diff", *pair, "--all", "--json", "--targets", *DETAIL_FILES, cwd=cwd
        )
        report.detail.append((title, json.loads(detail or "{}")))

    tmp = _staging(out_dir)
    try:
        plot_revs = [r for r in revs if r != WORKSPACE]
        raw = dvc("plots", "diff", *plot_revs, "--json", "-o", str(tmp / "dvc"), cwd=cwd)
        plots = json.loads(raw).get("data", {})
        (tmp / "plots").mkdir()
        for plot_id, entries in plots.items():
            for entry in entries:
                if entry.get("type") == "vega":
                    name = f"plots/{_safe(plot_id)}.png"
                    write_bytes(tmp / name, vegalite_png(entry["content"]))
                    report.charts[plot_id] = name
                elif entry.get("type") == "image":
                    for rev in entry.get("revisions", []):
                        name = f"images/{_safe(rev)}/{_safe(plot_id)}"
                        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(entry["url"], tmp / name)
                        report.images.setdefault(plot_id, {})[rev] = name
        shutil.rmtree(tmp / "dvc", ignore_errors=True)
        write_bytes(tmp / "report.md", markdown(report).encode())
        write_bytes(tmp / "report.html", to_html(report).encode())
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _staging(out_dir: Path) -> Path:
    """An empty folder beside out_dir, on its filesystem: the report is built there and renamed
    into place, so out_dir is never half-written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExigoError(
            f"-o {out_dir}: a file, not a folder; give -o a folder (created, or replaced by "
            "the new report) or move the file away (nothing was written)"
        )
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    except OSError as exc:  # a read-only disk, a file where a folder should be, ...
        raise ExigoError(
            f"-o {out_dir}: cannot write there ({exc.strerror or exc}); give -o a folder on a "
            "writable disk (nothing was written)"
        ) from None


def _fmt(value: object) -> str:
    """A number as a reader wants it: no float noise (0.0061, not -0.006110999999999776)."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    if value == 0:
        return "0"
    if abs(value) >= 1e-3:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.2e}"


def _rows(diff: dict, order: tuple[str, ...] = ()) -> list[tuple[str, str, str, str, str]]:
    """(file, key, old, new, change) rows: files in pipeline order, keys in each file's order."""
    files = [f for f in order if f in diff] + sorted(f for f in diff if f not in order)
    rows = []
    for path in files:
        for key, change in diff[path].items():
            delta = change.get("diff")
            rows.append(
                (
                    path,
                    key,
                    _fmt(change.get("old")),
                    _fmt(change.get("new")),
                    "" if delta is None else _fmt(delta),
                )
            )
    return rows


def _sections(r: Report) -> list[tuple[str, list[tuple[str, dict]], tuple[str, ...]]]:
    return [
        ("Params", r.params, ()),
        ("Metrics", r.metrics, HEADLINE_FILES),
        ("Detail", r.detail, DETAIL_FILES),
    ]


def markdown(r: Report) -> str:
    lines = [f"# exigo: {' vs '.join(r.revs)}", ""]
    lines += [f"> **{rev}**: {what}" for rev, what in r.missing.items()]
    lines += [""] if r.missing else []
    for heading, items, order in _sections(r):
        lines += [f"## {heading}", ""]
        for title, diff in items:
            rows = _rows(diff, order)
            lines += [f"**{title}**", ""]
            if not rows:
                lines += ["_no changes_", ""]
                continue
            lines += ["| file | key | old | new | change |", "|---|---|---:|---:|---:|"]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            lines.append("")
    lines += ["## Plots", ""]
    for plot_id, path in r.charts.items():
        lines += [f"### {plot_id}", "", f"![{plot_id}]({path})", ""]
    if r.images:
        lines += [
            "## Images",
            "",
            "| image | " + " | ".join(r.revs) + " |",
            "|---|" + "---|" * len(r.revs),
        ]
        for plot_id, by_rev in r.images.items():
            cells = [f"![{rev}]({by_rev[rev]})" if rev in by_rev else "—" for rev in r.revs]
            lines.append(f"| {plot_id} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _table(diff: dict, order: tuple[str, ...]) -> str:
    rows = _rows(diff, order)
    if not rows:
        return "<p><em>no changes</em></p>"
    head = "<tr><th>file</th><th>key</th><th>old</th><th>new</th><th>change</th></tr>"
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table>{head}{body}</table>"


def to_html(r: Report) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>exigo: {esc(' vs '.join(r.revs))}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "td:nth-child(n+3){text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}"
        ".missing{background:#fff3cd;border:1px solid #e0c36a;padding:.5em 1em}"
        ".side{display:flex;gap:1em}.side figure{margin:0;flex:1}</style></head><body>",
        f"<h1>exigo: {esc(' vs '.join(r.revs))}</h1>",
    ]
    for rev, what in r.missing.items():
        parts.append(f"<p class='missing'><b>{esc(rev)}</b>: {esc(what)}</p>")
    for heading, items, order in _sections(r):
        parts.append(f"<h2>{heading}</h2>")
        for title, diff in items:
            parts.append(f"<h3>{esc(title)}</h3>{_table(diff, order)}")
    parts.append("<h2>Plots</h2>")
    for plot_id, path in r.charts.items():
        parts.append(
            f"<h3>{esc(plot_id)}</h3><img class='chart' src='{esc(path)}' alt='{esc(plot_id)}'>"
        )
    if r.images:
        parts.append("<h2>Images</h2>")
        for plot_id, by_rev in r.images.items():
            figs = "".join(
                f"<figure><figcaption>{esc(rev)}</figcaption><img src='{esc(by_rev[rev])}'></figure>"
                for rev in r.revs
                if rev in by_rev
            )
            parts.append(f"<h3>{esc(plot_id)}</h3><div class='side'>{figs}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
