"""The `exigo` command: `exigo compare [REV ...]`."""

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
    args = parser.parse_args(argv)

    def compare() -> None:
        from exigo.compare import build

        out = Path(args.out)
        report = build(args.revs, out)
        print(
            f"wrote {out}/report.md and {out}/report.html: {' vs '.join(report.revs)}, "
            f"{len(report.charts)} plots, {len(report.images)} images per revision"
        )

    run_stage(compare)


if __name__ == "__main__":
    main()
