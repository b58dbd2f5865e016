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

WORKSPACE = "workspace"


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
    params_md: list[tuple[str, str]] = field(default_factory=list)  # (title, markdown)
    metrics_md: list[tuple[str, str]] = field(default_factory=list)
    params: list[tuple[str, dict]] = field(default_factory=list)  # (title, dvc --json)
    metrics: list[tuple[str, dict]] = field(default_factory=list)
    charts: dict[str, str] = field(default_factory=dict)  # plot id -> png path (relative)
    images: dict[str, dict[str, str]] = field(default_factory=dict)  # image id -> rev -> path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "plot"


def build(revs: list[str], out_dir: Path, cwd: Path = Path(".")) -> Report:
    """Collect diffs and render plots for `revs` into out_dir (replaced if it exists)."""
    from exigo.report import vegalite_png

    revs = revisions(revs)
    report = Report(revs)
    base = revs[0]
    for other in revs[1:]:
        title = f"{base} → {other}"
        for kind, md_list, json_list in (
            ("params", report.params_md, report.params),
            ("metrics", report.metrics_md, report.metrics),
        ):
            args = [kind, "diff", *_diff_args(base, other)]
            if kind == "metrics":
                args.append("--all")  # every metric with both values, not only the changed ones
            md_list.append((title, dvc(*args, "--md", cwd=cwd).strip()))
            json_list.append((title, json.loads(dvc(*args, "--json", cwd=cwd) or "{}")))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Built beside out_dir, then renamed into place: same filesystem, never half-written.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
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


def markdown(r: Report) -> str:
    lines = [f"# exigo: {' vs '.join(r.revs)}", ""]
    for heading, items in (("Params", r.params_md), ("Metrics", r.metrics_md)):
        lines += [f"## {heading}", ""]
        for title, md in items:
            lines += [f"**{title}**", "", md or "_no changes_", ""]
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


def _table(diff: dict) -> str:
    rows = []
    for path, entries in diff.items():
        for key, change in entries.items():
            old, new = change.get("old"), change.get("new")
            delta = change.get("diff")
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(c))}</td>"
                    for c in (path, key, old, new, "" if delta is None else delta)
                )
                + "</tr>"
            )
    if not rows:
        return "<p><em>no changes</em></p>"
    head = "<tr><th>file</th><th>key</th><th>old</th><th>new</th><th>change</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def to_html(r: Report) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>exigo: {esc(' vs '.join(r.revs))}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{max-width:100%}"
        ".side{display:flex;gap:1em}.side figure{margin:0;flex:1}</style></head><body>",
        f"<h1>exigo: {esc(' vs '.join(r.revs))}</h1>",
    ]
    for heading, items in (("Params", r.params), ("Metrics", r.metrics)):
        parts.append(f"<h2>{heading}</h2>")
        for title, diff in items:
            parts.append(f"<h3>{esc(title)}</h3>{_table(diff)}")
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
