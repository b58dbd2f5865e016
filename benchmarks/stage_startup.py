"""What each stage pays besides its compute: start-up, imports, set-up, per revision, same run.

Every stage is its own process (DVC runs `python -m stages.<name>`), so the seconds a stage spends
importing and setting up are paid on every `dvc repro` and every experiment, and many times over in
the test suite. On a small real dataset (the offline `mnist-sample`: real digits, 1 epoch, small
saliency/embed settings) the compute is a fraction of a second, so a stage's wall time is mostly
that overhead. For each revision given (default: the commit before this round's start-up cuts,
and HEAD), in a fresh worktree of it, same run:

    1. dvc repro                                every stage once (outputs in place; not timed)
    2. python -X importtime -c "import stages.X"  the import part, per stage, median of --repeat
    3. python -m stages.X                       the whole stage as DVC runs it, median of --repeat
                                                (`track` against a fresh mlflow.db each time:
                                                what the first `dvc repro` of a project pays)

    python benchmarks/stage_startup.py
    python benchmarks/stage_startup.py --revs 0e307b8 HEAD --repeat 5

Prints one table: each stage's import and wall seconds per revision and the ratios against the
first revision. Needs no network and no data folder.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import revision_tree, run

BASELINE = "0e307b8"  # before this round: set_seed imported torch's compiler stack in 4 stages
SMALL = {
    "data": {"name": "mnist-sample", "source": None},
    "train": {"epochs": 1, "device": "cpu"},
    "embed": {"n_points": 300},
    "saliency": {"n_eval": 100, "n_randomization": 10},
}


def stage_commands(tree: Path) -> list[str]:
    """`stages.X [args]` of every stage after download, in dvc.yaml's order."""
    stages = yaml.safe_load((tree / "dvc.yaml").read_text())["stages"]
    cmds = [re.sub(r"^python -m stages\.", "", s["cmd"]) for s in stages.values()]
    return [c for c in cmds if c.split()[0] not in ("vega_bundle", "download")]


def import_seconds(module: str, tree: Path, env: dict) -> float:
    """The cumulative import time of one stage module, from `python -X importtime`."""
    err = run(
        [sys.executable, "-X", "importtime", "-c", f"import stages.{module}"], tree, env
    ).stderr
    line = [ln for ln in err.splitlines() if ln.rstrip().endswith(f"| stages.{module}")][-1]
    return int(line.split("|")[1]) / 1e6


def wall_seconds(cmd: str, tree: Path, env: dict) -> float:
    if cmd == "track":  # a fresh store each time: the first run of a project
        (tree / "mlflow.db").unlink(missing_ok=True)
        shutil.rmtree(tree / "mlruns", ignore_errors=True)  # its artifacts
    start = time.perf_counter()
    run([sys.executable, "-m", *f"stages.{cmd}".split()], tree, env)
    return time.perf_counter() - start


def measure(rev: str, work: Path, repeat: int) -> dict[str, tuple[float, float]]:
    with revision_tree(rev, work) as (tree, env):
        env["EXIGO_CACHE_DIR"] = str(work / "download-cache")
        params = yaml.safe_load((tree / "params.yaml").read_text())
        for section, values in SMALL.items():
            params[section].update(values)
        (tree / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["dvc", "repro"], tree, env)
        out = {}
        for cmd in stage_commands(tree):
            module = cmd.split()[0]
            imports = statistics.median(import_seconds(module, tree, env) for _ in range(repeat))
            wall = statistics.median(wall_seconds(cmd, tree, env) for _ in range(repeat))
            out[cmd] = (imports, wall)
            print(f"  {rev} {cmd}: import {imports:.2f} s, stage {wall:.2f} s", flush=True)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revs", nargs="+", default=[BASELINE, "HEAD"])
    parser.add_argument("--repeat", type=int, default=3, help="runs per stage (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="exigo-startup-") as tmp:
        results = {rev: measure(rev, Path(tmp), args.repeat) for rev in args.revs}
    first, *others = args.revs
    stages = list(dict.fromkeys(cmd for rev in args.revs for cmd in results[rev]))
    head = f"{'stage':26}" + "".join(
        f"{rev + ' import':>16}{rev + ' stage':>15}" for rev in args.revs
    )
    print(head)
    for cmd in stages:
        row = f"{cmd:26}"
        for rev in args.revs:
            imports, wall = results[rev].get(cmd, (float("nan"), float("nan")))
            ratio = (
                f" ({wall / results[first][cmd][1]:.2f}x)"
                if rev != first and cmd in results[first]
                else ""
            )
            row += f"{imports:14.2f} s{wall:13.2f} s{ratio}"
        print(row)
    for rev in others:
        shared = [c for c in stages if c in results[rev] and c in results[first]]
        before = sum(results[first][c][1] for c in shared)
        after = sum(results[rev][c][1] for c in shared)
        print(
            f"all stages both revisions have: {first} {before:.1f} s, {rev} {after:.1f} s = {after / before:.2f}x"
        )


if __name__ == "__main__":
    main()
