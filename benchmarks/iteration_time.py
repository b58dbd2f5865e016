"""How long a user waits: a first `dvc repro` and then a train-param experiment, on real data.

For each git revision given (default: the commit before the embed maps got their own stages,
and HEAD), in a fresh worktree of that revision, with the same data folder, same run:

    1. data/mnist/ from today's download stage, `dvc commit`ed  (not timed: "the data is cached")
    2. dvc repro                          the first run of everything else, timed
    3. dvc exp run -S train.lr=0.002      a train-param experiment, timed, with the stages it ran

    python benchmarks/iteration_time.py --source ../shared/data/mnist
    python benchmarks/iteration_time.py --source DIR --revs f7a8e4a HEAD --lr 0.002

Prints each revision's times, stages run and test accuracy, and the ratios against the first
revision. Needs only the data folder (the four MNIST .gz files); never the network.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import ROOT, revision_tree, sh

BASELINE = "f7a8e4a"  # before this round: embed computed its three t-SNE maps in one stage


def timed(args: list[str], cwd: Path, env: dict) -> tuple[float, list[str]]:
    start = time.perf_counter()
    out = sh(args, cwd, env)
    return time.perf_counter() - start, re.findall(r"Running stage '([^']+)'", out)


def prepare_data(source: Path, work: Path) -> Path:
    """data/mnist/ made once by today's download stage (older revisions cannot read every
    recompressed copy; the data is the same for all of them)."""
    folder = work / "download"
    folder.mkdir()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update({"name": "mnist", "source": str(source)})
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["EXIGO_CACHE_DIR"] = str(work / "download-cache")
    sh([sys.executable, "-m", "stages.download"], folder, env)
    return folder / "data" / "mnist"


def measure(rev: str, data: Path, source: Path, lr: float, work: Path) -> dict:
    with revision_tree(rev, work) as (tree, env):
        params = yaml.safe_load((tree / "params.yaml").read_text())
        params["data"].update({"name": "mnist", "source": str(source)})
        (tree / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        sh(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit",
            "-qam", "bench: real MNIST from a local folder"], tree, env)  # fmt: skip
        shutil.copytree(data, tree / "data" / "mnist")  # the data DVC already has ...
        sh(["dvc", "commit", "-f", "download"], tree, env)  # ... recorded as download's outs
        first, first_stages = timed(["dvc", "repro"], tree, env)
        test_acc = json.loads((tree / "metrics/evaluate.json").read_text())["accuracy"]
        experiment, exp_stages = timed(
            ["dvc", "exp", "run", "-S", f"train.lr={lr}", "-n", "bench-lr"], tree, env
        )
        shown = json.loads(sh(["dvc", "exp", "show", "--json"], tree, env))
        exp_acc = None
        for base in shown:
            for e in base.get("experiments") or []:
                if e.get("name") == "bench-lr":
                    rev_data = e["revs"][0]["data"]["metrics"]
                    exp_acc = rev_data["metrics/evaluate.json"]["data"]["accuracy"]
        return {
            "rev": rev,
            "first_repro_s": round(first, 1),
            "first_repro_stages": first_stages,
            "test_acc": test_acc,
            "exp_run_s": round(experiment, 1),
            "exp_run_stages": exp_stages,
            "exp_test_acc": exp_acc,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with the MNIST .gz")
    parser.add_argument("--revs", nargs="+", default=[BASELINE, "HEAD"])
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--out", default=".bench/iteration_time.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="exigo-iter-") as tmp:
        data = prepare_data(args.source.resolve(), Path(tmp))
        results = [
            measure(rev, data, args.source.resolve(), args.lr, Path(tmp)) for rev in args.revs
        ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    base = results[0]
    for r in results:
        print(
            f"{r['rev']}: first dvc repro {r['first_repro_s']:.0f} s "
            f"({r['first_repro_s'] / base['first_repro_s']:.2f}x), test acc {r['test_acc']:.4f}; "
            f"dvc exp run -S train.lr={args.lr} {r['exp_run_s']:.0f} s "
            f"({r['exp_run_s'] / base['exp_run_s']:.2f}x, "
            f"{r['exp_run_s'] / r['first_repro_s']:.2f} of its first run), "
            f"test acc {r['exp_test_acc']}; it ran {', '.join(r['exp_run_stages'])}"
        )


if __name__ == "__main__":
    main()
