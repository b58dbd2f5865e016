"""Where trials run: one git clone of the project per worker, never the project's own workspace.

`dvc exp run` cannot run twice in one workspace, and `dvc exp run --temp` holds the repo lock
for its whole run, so parallel trials need workspaces of their own. DVC's queue
(`dvc queue start -j N`) has them, but its workers take their environment from
`dvc queue start`, not from each experiment, so it cannot tag a trial's MLflow run. A worker here
is what DVC's temp executors are, kept between trials: a clone of the project at its HEAD that
shares the project's DVC cache (run-cache included), whose experiments are pushed back into the
project (`dvc exp push`) and to its git remote when it has one. The user's workspace is never
touched, and a worker's clone is reset to HEAD before and after each trial.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from exigo.core.errors import ExigoError
from exigo.core.params import flatten

SWEEP_DIR = Path(".exigo") / "sweep"  # git-ignored: worker clones and trial logs
PROJECT_REMOTE = "exigo-project"  # a worker clone's name for the project it was cloned from
COMMAND_TIMEOUT_S = 600


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """git or dvc, captured; a failure becomes one line with the command's last error line."""
    exe = shutil.which(args[0]) or args[0]
    try:
        result = subprocess.run(
            [exe, *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
        )
    except FileNotFoundError:
        raise ExigoError(f"{args[0]} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise ExigoError(f"{' '.join(args)}: no answer in {COMMAND_TIMEOUT_S} s") from None
    if check and result.returncode != 0:
        raise ExigoError(
            f"{' '.join(args[:3])} in {cwd}: {last_error(result.stderr + result.stdout)}"
        )
    return result


def last_error(text: str) -> str:
    """The line that says why: exigo's `error: ...` if a stage printed one, else DVC's
    `ERROR: ...`, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for prefix in ("error:", "ERROR:", "fatal:"):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            return found[-1]
    return lines[-1] if lines else "failed (no output)"


@dataclass(frozen=True)
class Project:
    root: Path
    head: str  # the commit every trial starts from (the experiments' baseline)
    remote: str | None  # the git remote experiments are pushed to, if any
    cache_dir: str  # the DVC cache every worker shares

    @classmethod
    def here(cls, root: Path | None = None, sweep_file: Path | None = None) -> Project:
        """The project at `root` (default: here); `sweep_file` may differ from HEAD."""
        root = (root or Path.cwd()).resolve()
        if not (root / "dvc.yaml").exists() or not (root / ".dvc").is_dir():
            raise ExigoError(f"{root}: not a DVC project root (run exigo sweep where dvc.yaml is)")
        head = run(["git", "rev-parse", "HEAD"], root).stdout.strip()
        mine = set()  # the sweep file may be anywhere; inside the project, its edits are free
        if sweep_file and sweep_file.resolve().is_relative_to(root):
            mine.add(str(sweep_file.resolve().relative_to(root)))
        _check_committed(root, mine)
        cache = run(["dvc", "cache", "dir"], root).stdout.strip()
        return cls(root, head, _push_remote(root), cache)

    @property
    def sweep_dir(self) -> Path:
        return self.root / SWEEP_DIR

    def log_path(self, experiment: str) -> Path:
        return self.sweep_dir / "logs" / f"{experiment}.log"


def _check_committed(root: Path, exempt: set[str]) -> None:
    """Trials start from HEAD: uncommitted edits (other than pipeline results and the sweep's
    own file, which the trials do not read) would be lost."""
    status = run(["git", "status", "--porcelain", "--untracked-files=no"], root).stdout
    changed = [line[3:].strip() for line in status.splitlines() if line.strip()]
    results = _pipeline_results(root) | exempt
    edits = [p for p in changed if not any(p == r or p.startswith(f"{r}/") for r in results)]
    if edits:
        shown = ", ".join(edits[:5]) + (", ..." if len(edits) > 5 else "")
        raise ExigoError(
            f"uncommitted changes in {shown}: trials start from the last commit (HEAD) in their "
            "own clones; commit them (or git stash) first"
        )


def _pipeline_results(root: Path) -> set[str]:
    """dvc.lock and the paths dvc.yaml declares as outputs, metrics or plots."""
    stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {})
    paths = {"dvc.lock"}
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                path = next(iter(entry)) if isinstance(entry, dict) else str(entry)
                if "${" not in path:
                    paths.add(path.rstrip("/"))
    return paths


def _push_remote(root: Path) -> str | None:
    """The branch's upstream remote, else `origin`, else the only remote, else none."""
    upstream = run(["git", "rev-parse", "--abbrev-ref", "@{upstream}"], root, check=False)
    remotes = run(["git", "remote"], root).stdout.split()
    if upstream.returncode == 0 and "/" in upstream.stdout:
        name = upstream.stdout.strip().split("/", 1)[0]
        if name in remotes:
            return name
    if "origin" in remotes:
        return "origin"
    return remotes[0] if len(remotes) == 1 else None


@contextlib.contextmanager
def worker_clone(project: Project, index: int) -> Iterator[Path]:
    """A clone of the project for one worker, held (file lock) while the worker runs.

    Two sweeps in one project take different clones: a held clone is skipped."""
    workers = project.sweep_dir / "workers"
    workers.mkdir(parents=True, exist_ok=True)
    for i in range(index, index + 64):
        lock = FileLock(workers / f"{i}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            clone = workers / str(i)
            _prepare(project, clone)
            yield clone
        finally:
            lock.release()
        return
    raise ExigoError(f"{workers}: 64 worker clones are busy")


def _prepare(project: Project, clone: Path) -> None:
    """Clone (first time) or fetch, then check out the project's HEAD with its DVC settings."""
    if not (clone / ".git").exists():
        if clone.exists():
            shutil.rmtree(clone)
        run(
            [
                "git",
                "clone",
                "-q",
                "--no-checkout",
                "-o",
                PROJECT_REMOTE,
                str(project.root),
                str(clone),
            ],
            project.root,
        )
    run(["git", "fetch", "-q", PROJECT_REMOTE, "HEAD"], clone)
    run(["git", "checkout", "-q", "--force", "--detach", project.head], clone)
    for key in ("user.name", "user.email"):  # DVC commits each experiment as the project would
        value = run(["git", "config", key], project.root, check=False).stdout.strip()
        if value:
            run(["git", "config", key, value], clone)
    remotes = run(["git", "remote"], clone).stdout.split()
    if project.remote:
        url = run(["git", "remote", "get-url", project.remote], project.root).stdout
        url = _absolute(url, project.root)
        if project.remote in remotes:
            run(["git", "remote", "set-url", project.remote, url], clone)
        else:
            run(["git", "remote", "add", project.remote, url], clone)
    local = project.root / ".dvc" / "config.local"  # remote credentials are kept there
    if local.exists():
        shutil.copy(local, clone / ".dvc" / "config.local")
    run(["dvc", "config", "--local", "cache.dir", project.cache_dir], clone)
    reset(clone)


def _absolute(url: str, root: Path) -> str:
    """A remote given as a path relative to the project, as seen from anywhere else."""
    url = url.strip()
    scheme = re.match(r"^[\w+.-]+://", url) or re.match(r"^[^/]+:", url)  # URL or user@host:path
    if scheme or Path(url).is_absolute():
        return url
    return str((root / url).resolve())


def reset(clone: Path) -> None:
    """Back to HEAD: params.yaml and every tracked file restored, untracked leftovers removed
    (DVC outputs are git-ignored and stay, so unchanged stages are not re-run)."""
    run(["git", "reset", "-q", "--hard", "HEAD"], clone)
    run(["git", "clean", "-q", "-fd"], clone)


def push(project: Project, clone: Path, experiment: str) -> str | None:
    """The experiment into the project (`dvc exp show` there lists it) and, when the project
    has one, to its git remote with its data (DVC's default remote). Returns a push problem."""
    run(["dvc", "exp", "push", "--no-cache", PROJECT_REMOTE, experiment], clone)  # shared cache
    if project.remote is None:
        return None
    has_dvc_remote = run(["dvc", "remote", "default"], clone, check=False).returncode == 0
    args = ["dvc", "exp", "push", *([] if has_dvc_remote else ["--no-cache"])]
    result = run([*args, project.remote, experiment], clone, check=False)
    if result.returncode != 0:
        return f"dvc exp push {project.remote}: {last_error(result.stderr + result.stdout)}"
    return None


def metrics(cwd: Path) -> dict[str, dict[str, Any]]:
    """What `dvc metrics show` tracks in a workspace: {file: {flat key: value}}."""
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], cwd).stdout or "{}")
    files = next(iter(shown.values()), {}).get("data", {}) if shown else {}
    return {path: flatten(entry["data"]) for path, entry in files.items() if "data" in entry}


def find_metric(files: dict[str, dict[str, Any]], metric: str) -> tuple[str, float]:
    """Resolve a metric by its key in whichever file holds it (`file:key` picks one file)."""
    path, _, key = metric.rpartition(":")
    candidates = {path: files[path]} if path in files else {} if path else files
    holders = [p for p, values in candidates.items() if key in values]
    if not holders:
        where = f"{path}" if path else "any metrics file DVC tracks"
        raise ExigoError(
            f"objective metric '{metric}': no key '{key}' in {where} "
            f"(files: {', '.join(files) or 'none'})"
        )
    if len(holders) > 1:
        raise ExigoError(
            f"objective metric '{metric}' is in {' and '.join(holders)}: name one, e.g. "
            f"'{holders[0]}:{key}'"
        )
    value = candidates[holders[0]][key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExigoError(f"objective metric '{metric}' in {holders[0]} is not a number ({value!r})")
    return holders[0], float(value)


def trial_env(project: Project, study: str, number: int) -> dict[str, str]:
    """The trial's environment: its study and number (the track stage tags its MLflow run with
    them) and the project's MLflow store and experiment, not the clone's."""
    from exigo.track.runs import experiment_name, tracking_uri

    env = dict(os.environ)
    env.pop("DVC_ROOT", None)
    env["EXIGO_SWEEP_STUDY"] = study
    env["EXIGO_SWEEP_TRIAL"] = str(number)
    env["MLFLOW_TRACKING_URI"] = tracking_uri(project.root)
    env["MLFLOW_EXPERIMENT_NAME"] = experiment_name(project.root)
    return env
