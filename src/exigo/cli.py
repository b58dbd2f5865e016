"""The `exigo` command: `exigo compare [REV ...]`, `exigo push [-r REMOTE]`,
`exigo sweep [sweep.yaml]`, `exigo set KEY=VALUE ...`."""

from __future__ import annotations

import argparse
from pathlib import Path

from exigo.core.errors import run_stage


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exigo", description="exigo: interrogate trained models.")
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser(
        "compare",
        help="write a comparison report (params, metrics, plots, images) of revisions",
        description="Compare revisions (commits, branches or DVC experiment names). No REV: HEAD "
        "vs the workspace; one REV: it vs the workspace; more: those revisions.",
    )
    cmp.add_argument("revs", nargs="*", metavar="REV")
    cmp.add_argument("-o", "--out", default="compare", help="output folder (default: compare/)")
    push = sub.add_parser(
        "push",
        help="dvc push --run-cache, plus the outputs the run-cache records name",
        description="Push the workspace's DVC outputs, the run-cache records and every output "
        "they name (dvc push --run-cache sends only the records), so that another machine's "
        "`dvc exp run --pull` restores stages already run here instead of running them.",
    )
    push.add_argument("-r", "--remote", help="DVC remote name (default: the default remote)")
    push.add_argument("-j", "--jobs", type=int, help="parallel uploads")
    swp = sub.add_parser(
        "sweep",
        help="search hyperparameters with Optuna, one DVC experiment per trial",
        description="Run the Optuna study that sweep.yaml describes: each trial is one `dvc exp "
        "run` in a worker's own clone, logged to MLflow. Workers on several machines share one "
        "study through --storage: the study's trials are run once in total.",
    )
    swp.add_argument("file", nargs="?", default="sweep.yaml", help="(default: sweep.yaml)")
    swp.add_argument(
        "-w", "--workers", type=int, default=1, help="trials at once on this machine (default: 1)"
    )
    swp.add_argument(
        "--storage",
        help="Optuna storage URL shared by every worker, e.g. postgresql://user@host/db "
        "(default: sqlite:///optuna.db in the project)",
    )
    setp = sub.add_parser(
        "set",
        help="change params.yaml as `dvc exp run -S` would, checked, without running",
        description="Apply KEY=VALUE overrides (DVC's -S syntax) to params.yaml, in the form DVC "
        "writes it; the file changes only if the result is valid params. Then `dvc repro`.",
    )
    setp.add_argument("overrides", nargs="+", metavar="KEY=VALUE")
    return parser


def set_params(args: argparse.Namespace) -> None:
    from exigo.core.overrides import set_params as apply

    apply(Path("params.yaml"), args.overrides)
    print(f"params.yaml: {', '.join(args.overrides)} (run dvc repro)")


def compare(args: argparse.Namespace) -> None:
    from exigo.compare.report import build

    out = Path(args.out)
    report = build(args.revs, out)
    print(
        f"wrote {out}/report.md and {out}/report.html: {' vs '.join(report.revs)}, "
        f"{len(report.charts)} plots, {len(report.images)} images per revision"
    )


def push(args: argparse.Namespace) -> None:
    from exigo.track.share import push as push_run_cache

    pushed = push_run_cache(Path.cwd(), args.remote, args.jobs)
    print(
        f"pushed to {pushed.remote}: {pushed.records} run-cache records and "
        f"{pushed.files} files the remote did not have"
    )


def sweep(args: argparse.Namespace) -> None:
    from exigo.sweep.run import run_sweep

    run_sweep(args.file, workers=args.workers, storage=args.storage)


COMMANDS = {"compare": compare, "push": push, "sweep": sweep, "set": set_params}


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    run_stage(lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    main()
