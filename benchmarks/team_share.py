"""What a team saves: a fresh clone's `dvc pull` + no-op `dvc repro`, and a `dvc exp run` that the
shared run-cache restores against the same experiment trained from scratch, in the same run.

    python benchmarks/team_share.py                 # mnist-sample, default params, a folder remote
    python benchmarks/team_share.py --quick         # 1 epoch, small saliency/embed settings

Builds, in a temporary folder: machine A (a copy of this project, git + DVC, a shared-folder DVC
remote, a bare git origin), A's baseline `dvc repro`, then times
  1. A: `dvc exp run -S train.lr=0.002`                 (trained from scratch)
  2. B: `git clone` + `dvc pull` + `dvc repro`          (a fresh clone; nothing may run)
  3. B: `dvc exp run --pull -S train.lr=0.002`           (restored from A's run-cache)
Each machine logs to its own local mlflow.db. Prints the times and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def sh(*args: str, cwd: Path, env: dict) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr}")
    return result.stdout


def timed(*args: str, cwd: Path, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    out = sh(*args, cwd=cwd, env=env)
    return time.perf_counter() - start, out


def ran(out: str) -> list[str]:
    return [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 epoch, small saliency/embed params")
    ap.add_argument("--out", default=".bench/team_share.json")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each time shows as soon as it is measured

    tmp = Path(tempfile.mkdtemp(prefix="exigo-team-"))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    env.update(GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@example.com")
    env.update(GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@example.com")
    for key in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
        env.pop(key, None)
    dvc, git = shutil.which("dvc"), shutil.which("git")
    a, b, origin, remote = tmp / "a/exigo", tmp / "b/exigo", tmp / "origin.git", tmp / "remote"
    try:
        a.mkdir(parents=True)
        for name in ("stages", "src", ".dvc"):
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "tmp", "cache")
            shutil.copytree(ROOT / name, a / name, ignore=ignore)
        for name in ("dvc.yaml", ".gitignore", ".dvcignore", "pyproject.toml"):
            shutil.copy(ROOT / name, a / name)
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["data"]["name"] = "mnist-sample"
        if args.quick:
            params["train"]["epochs"] = 1
            params["saliency"].update(n_eval=100, n_randomization=10, n_images=4)
            params["embed"].update(method="pca", n_points=200)
        (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        sh(git, "init", "-q", "-b", "main", cwd=a, env=env)
        sh(dvc, "init", "-q", "--force", cwd=a, env=env)
        shutil.copy(ROOT / ".dvc/config", a / ".dvc/config")
        sh(dvc, "remote", "add", "-d", "store", str(remote), cwd=a, env=env)
        sh(git, "init", "-q", "--bare", "-b", "main", str(origin), cwd=tmp, env=env)
        sh(git, "remote", "add", "origin", str(origin), cwd=a, env=env)
        sh(dvc, "repro", cwd=a, env=env)
        sh(git, "add", "-A", cwd=a, env=env)
        sh(git, "commit", "-qm", "baseline", cwd=a, env=env)
        sh(git, "push", "-q", "origin", "main", cwd=a, env=env)

        trained, out = timed(dvc, "exp", "run", "-S", "train.lr=0.002", cwd=a, env=env)
        print(f"A: dvc exp run -S train.lr=0.002 (trained): {trained:.1f} s, ran {ran(out)}")
        sh(shutil.which("exigo"), "push", cwd=a, env=env)

        b.parent.mkdir(parents=True)
        sh(git, "clone", "-q", str(origin), str(b), cwd=tmp, env=env)
        pull, _ = timed(dvc, "pull", cwd=b, env=env)
        noop, out = timed(dvc, "repro", cwd=b, env=env)
        print(f"B: dvc pull {pull:.1f} s + dvc repro {noop:.1f} s, ran {ran(out)}")

        restored, out = timed(dvc, "exp", "run", "--pull", "-S", "train.lr=0.002", cwd=b, env=env)
        print(
            f"B: dvc exp run --pull -S train.lr=0.002 (restored): {restored:.1f} s, ran {ran(out)}"
        )
        print(f"restored / trained = {restored / trained:.2f}")
        result = {
            "trained_s": trained,
            "restored_s": restored,
            "pull_s": pull,
            "noop_repro_s": noop,
            "quick": args.quick,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
