"""What the benchmarks that compare revisions share: commands that must succeed, and a revision
checked out in a worktree of its own, run with its own code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(
    args: list[str], cwd: Path, env: dict, timeout: float = 3600
) -> subprocess.CompletedProcess:
    """Run a command; if it fails, stop the benchmark with the command and the end of its output."""
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        sys.exit(
            f"{' '.join(args)} failed in {cwd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def sh(args: list[str], cwd: Path, env: dict, timeout: float = 3600) -> str:
    """A command's standard output (see `run`)."""
    return run(args, cwd, env, timeout).stdout


@contextmanager
def revision_tree(rev: str, work: Path) -> Iterator[tuple[Path, dict]]:
    """A fresh worktree of `rev` under `work`, and an environment whose `python -m stages.X`
    runs that revision's code and logs to that tree's own mlflow.db; removed on leaving."""
    tree = work / rev.replace("/", "_")
    sh(["git", "worktree", "add", "-q", "--detach", str(tree), rev], ROOT, dict(os.environ))
    try:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), str(tree)])
        env.pop("MLFLOW_TRACKING_URI", None)
        yield tree, env
    finally:
        sh(["git", "worktree", "remove", "--force", str(tree)], ROOT, dict(os.environ))
