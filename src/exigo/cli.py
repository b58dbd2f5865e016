"""The `exigo` command: `exigo compare [REV ...]`, `exigo push [-r REMOTE]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from exigo.errors import run_stage


def main(argv: list[str] | None = None) -> None:
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
    args = parser.parse_args(argv)

    def compare() -> None:
        from exigo.compare import build

        out = Path(args.out)
        report = build(args.revs, out)
        print(
            f"wrote {out}/report.md and {out}/report.html: {' vs '.join(report.revs)}, "
            f"{len(report.charts)} plots, {len(report.images)} images per revision"
        )

    def share() -> None:
        from exigo.share import push as push_run_cache

        pushed = push_run_cache(Path.cwd(), args.remote, args.jobs)
        print(
            f"pushed to {pushed.remote}: {pushed.records} run-cache records and "
            f"{pushed.files} files the remote did not have"
        )

    run_stage(compare if args.command == "compare" else share)


if __name__ == "__main__":
    main()
