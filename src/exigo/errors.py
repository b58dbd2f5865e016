"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class ExigoError(Exception):
    """An error the user can act on; its message is printed as it is."""


class ParamsError(ExigoError):
    """params.yaml holds an unknown key, a wrong type or an out-of-range value."""


class DownloadError(ExigoError):
    """No source could deliver a verified copy of a dataset file."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); an ExigoError becomes `error: ...` on stderr and exit code 2."""
    try:
        main()
    except ExigoError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
