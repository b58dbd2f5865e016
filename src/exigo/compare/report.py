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

from exigo.core import environment
from exigo.core.errors import ExigoError
from exigo.core.outputs import write_bytes
from exigo.core.runtime import warn
from exigo.track.tables import DETAIL_TABLES

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
    environment: list[tuple[str, dict]] = field(default_factory=list)  # in the shape of a diff
    missing: dict[str, str] = field(default_factory=dict)  # rev -> what to run for results
    stale: dict[str, str] = field(default_factory=dict)  # rev -> params.yaml vs dvc.lock
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
        "with dvc repro && git add params.yaml dvc.lock metrics plots && git commit -m baseline, "
        "or compare experiments by name"
    )


def _text_at(path: str, rev: str, cwd: Path) -> str | None:
    """A file of the repo at a revision (git-tracked or DVC-tracked); None where it is not."""
    try:
        if rev == WORKSPACE:
            return (cwd / path).read_text()
        import dvc.api

        return dvc.api.read(path, repo=str(cwd), rev=rev)
    except Exception:  # DVC's own errors for a missing file are many; all mean "not there"
        return None


def params_mismatch(rev: str, cwd: Path) -> list[str]:
    """The params whose value in `params.yaml` differs from what `dvc.lock` says the results
    came from, at one revision: 'key: params.yaml X, dvc.lock Y'."""
    import yaml

    from exigo.core.params import flatten

    texts = (_text_at("params.yaml", rev, cwd), _text_at("dvc.lock", rev, cwd))
    if None in texts:
        return []
    try:
        params, lock = (yaml.safe_load(t) or {} for t in texts)
    except yaml.YAMLError:
        return []
    current = flatten(params) if isinstance(params, dict) else {}
    locked: dict[str, object] = {}
    for stage in (lock.get("stages") or {}).values() if isinstance(lock, dict) else ():
        values = (stage.get("params") or {}).get("params.yaml") if isinstance(stage, dict) else None
        if isinstance(values, dict):
            locked.update(flatten(values))
    return [
        f"{key}: params.yaml {current.get(key)!r}, dvc.lock {value!r}"
        for key, value in sorted(locked.items())
        if key in current and current[key] != value
    ]


def environment_at(rev: str, cwd: Path) -> dict | None:
    """The environment `train` recorded at a revision (models/environment.json, a DVC output);
    None where there is none (a revision from before the record, or outputs not here)."""
    text = _text_at(str(environment.RECORD), rev, cwd)
    try:
        record = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def environment_diff(base: str, other: str, cwd: Path) -> dict:
    """What differs between two revisions' environments, as a `metrics diff` of one file; a
    side without a record is one row that says so."""
    old, new = environment_at(base, cwd), environment_at(other, cwd)
    if old is None and new is None:
        return {}
    if old is None or new is None:  # the report's table says so; no warning beside "no results"
        changes = {
            "record": {
                "old": "—" if old is None else "recorded",
                "new": "—" if new is None else "recorded",
            }
        }
        return {str(environment.RECORD): changes}
    differs = environment.differences(old, new)
    if differs:
        what = ", ".join(f"{k} {a} → {b}" for k, (a, b) in differs.items())
        warn(f"exigo compare: {base} and {other} ran in different environments: {what}")
    changes = {key: {"old": a, "new": b} for key, (a, b) in differs.items()}
    return {str(environment.RECORD): changes} if changes else {}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "plot"


def build(revs: list[str], out_dir: Path, cwd: Path = Path(".")) -> Report:
    """Collect diffs and render plots for `revs` into out_dir (replaced if it exists)."""
    from exigo.views.vega import vegalite_png

    revs = revisions(revs)
    report = Report(revs)
    _staging(out_dir).rmdir()  # a place we cannot write stops here, before any DVC command
    for rev in revs:
        if differs := params_mismatch(rev, cwd):
            report.stale[rev] = (
                f"its params.yaml does not match the dvc.lock its results came from "
                f"({'; '.join(differs[:3])}{'; ...' if len(differs) > 3 else ''}): its params "
                "diff shows values its results never used; commit params.yaml with dvc.lock"
            )
            warn(f"exigo compare: {rev}: {report.stale[rev]}")
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
        report.environment.append((title, environment_diff(base, other, cwd)))

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


# Values that name something (a class, a method) are compared as labels: "0 → 9", no change.
LABEL_KEYS = frozenset({"predicted", "actual", "true", "class", "label", "name", "method"})
SUMMARY_ROWS = 8  # the headline numbers that changed most, first in the report


@dataclass
class Line:
    """One compared value: formatted for reading, with its relative change for ordering."""

    file: str
    key: str
    old: str
    new: str
    change: str
    relative: float  # |change| / |old|; 0 for labels and unchanged values
    changed: bool

    def cells(self) -> tuple[str, str, str, str, str]:
        return self.file, self.key, self.old, self.new, self.change


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _row_format(*values: object):
    """One format for a row's old, new and change, so a quantity reads the same in all three:
    whole numbers as integers, others with 4 decimals, small ones (< 0.01) to 3 digits."""
    nums = [float(v) for v in values if _number(v)]
    if all(v.is_integer() for v in nums):
        return lambda v: f"{int(v):,}"
    if max(abs(v) for v in nums) >= 0.01:
        return lambda v: f"{v:.4f}"
    return lambda v: f"{v:.3g}"


def _line(path: str, key: str, change: dict) -> Line:
    old, new, delta = change.get("old"), change.get("new"), change.get("diff")
    label = key.rsplit(".", 1)[-1] in LABEL_KEYS or not all(
        _number(v) for v in (old, new) if v is not None
    )
    if label or old is None or new is None:
        return Line(path, key, _fmt(old), _fmt(new), "", 0.0, old != new)
    fmt = _row_format(old, new, delta if delta is not None else 0)
    delta = new - old if delta is None else delta
    relative = abs(delta) / abs(old) if old else (float("inf") if delta else 0.0)
    sign = "+" if delta > 0 else ""
    return Line(path, key, fmt(old), fmt(new), f"{sign}{fmt(delta)}", relative, delta != 0)


def _rows(diff: dict, order: tuple[str, ...] = ()) -> list[Line]:
    """Every compared value: files in pipeline order, then the largest relative changes first
    within a file; unchanged values last."""
    files = [f for f in order if f in diff] + sorted(f for f in diff if f not in order)
    rows = []
    for path in files:
        lines = [_line(path, key, change) for key, change in diff[path].items()]
        rows += sorted(lines, key=lambda line: (not line.changed, -line.relative))
    return rows


def _sections(r: Report) -> list[tuple[str, list[tuple[str, dict]], tuple[str, ...], bool]]:
    """(heading, diffs, file order, open at first) for the report's folding sections."""
    return [
        ("Params", r.params, (), True),
        ("Metrics", r.metrics, HEADLINE_FILES, True),
        ("Detail", r.detail, DETAIL_FILES, False),
        ("Environment", r.environment, (), any(diff for _, diff in r.environment)),
    ]


def summary(r: Report) -> list[Line]:
    """The params that changed, then the headline numbers that changed most (relative)."""
    params = [line for _, diff in r.params for line in _rows(diff) if line.changed]
    metrics = [line for _, diff in r.metrics for line in _rows(diff, HEADLINE_FILES)]
    moved = sorted((m for m in metrics if m.changed), key=lambda m: -m.relative)
    return params + moved[:SUMMARY_ROWS]


def _notes(r: Report) -> list[tuple[str, str]]:
    return [*r.missing.items(), *r.stale.items()]


def markdown(r: Report) -> str:
    lines = [f"# exigo: {' vs '.join(r.revs)}", ""]
    lines += [f"> **{rev}**: {what}" for rev, what in _notes(r)]
    lines += [""] if _notes(r) else []
    lines += ["## What changed most", ""]
    lines += _md_table(summary(r)) or ["_no changes_", ""]
    for heading, items, order, _ in _sections(r):
        lines += [f"## {heading}", ""]
        for title, diff in items:
            rows = _rows(diff, order)
            changed = [row for row in rows if row.changed]
            lines += [f"**{title}**", ""]
            lines += _md_table(changed) or ["_no changes_", ""]
            if len(rows) > len(changed):
                lines += [f"_{len(rows) - len(changed)} values unchanged_", ""]
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


def _md_table(rows: list[Line]) -> list[str]:
    if not rows:
        return []
    out = ["| file | key | old | new | change |", "|---|---|---:|---:|---:|"]
    return [*out, *("| " + " | ".join(row.cells()) + " |" for row in rows), ""]


def _table(rows: list[Line]) -> str:
    if not rows:
        return "<p class='none'>no changes</p>"
    head = "<tr><th>file</th><th>key</th><th>old</th><th>new</th><th>change</th></tr>"
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row.cells()) + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


STYLE = (
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;"
    "max-width:1180px;margin:1.5em auto;padding:0 1.5em}"
    "h1{font-size:1.5em;margin-bottom:.2em}h3{font-size:1em;margin:1em 0 .4em}"
    "details{border-top:1px solid #ddd;padding:.4em 0}"
    "summary{font-size:1.2em;font-weight:600;cursor:pointer;padding:.3em 0}"
    "summary small{font-weight:400;color:#666;font-size:.75em}"
    "table{border-collapse:collapse;margin:.3em 0 .8em;font-size:.92em}"
    "td,th{border-bottom:1px solid #e4e4e4;padding:3px 10px;text-align:left}"
    "th{background:#f6f6f6}tr:hover td{background:#fafafa}"
    "td:nth-child(n+3){text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    ".note{background:#fff3cd;border:1px solid #e0c36a;padding:.5em 1em;margin:.5em 0}"
    ".none,.count{color:#777;font-style:italic}"
    "img{max-width:100%}img.chart{max-width:720px;display:block}"
    ".side{display:flex;gap:1em;flex-wrap:wrap}.side figure{margin:0;flex:1;min-width:300px}"
    "figcaption{font-weight:600;margin-bottom:.2em}"
)


def _fold(title: str, body: str, is_open: bool, note: str = "") -> str:
    small = f" <small>{html.escape(note)}</small>" if note else ""
    return f"<details{' open' if is_open else ''}><summary>{title}{small}</summary>{body}</details>"


def to_html(r: Report) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>exigo: {esc(' vs '.join(r.revs))}</title><style>{STYLE}</style></head><body>",
        f"<h1>exigo: {esc(' vs '.join(r.revs))}</h1>",
    ]
    for rev, what in _notes(r):
        parts.append(f"<p class='note'><b>{esc(rev)}</b>: {esc(what)}</p>")
    parts.append(_fold("What changed most", _table(summary(r)), True, "params, then headline"))
    for heading, items, order, is_open in _sections(r):
        body, n_changed = [], 0
        for title, diff in items:
            rows = _rows(diff, order)
            changed = [row for row in rows if row.changed]
            n_changed += len(changed)
            same = len(rows) - len(changed)
            tail = f"<p class='count'>{same} values unchanged</p>" if same else ""
            body.append(f"<h3>{esc(title)}</h3>{_table(changed)}{tail}")
        parts.append(_fold(heading, "".join(body), is_open, f"{n_changed} changed"))
    charts = "".join(
        f"<h3>{esc(plot_id)}</h3><img class='chart' src='{esc(path)}' alt='{esc(plot_id)}'>"
        for plot_id, path in r.charts.items()
    )
    parts.append(_fold("Plots", charts, True, f"{len(r.charts)} charts"))
    if r.images:
        figures = []
        for plot_id, by_rev in r.images.items():
            figs = "".join(
                f"<figure><figcaption>{esc(rev)}</figcaption><img src='{esc(by_rev[rev])}'></figure>"
                for rev in r.revs
                if rev in by_rev
            )
            figures.append(f"<h3>{esc(plot_id)}</h3><div class='side'>{figs}</div>")
        parts.append(_fold("Images", "".join(figures), True, f"{len(r.images)} images"))
    parts.append("</body></html>")
    return "\n".join(parts)
