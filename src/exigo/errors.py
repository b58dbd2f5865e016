"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator


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


@contextlib.contextmanager
def interrupts_always_stop() -> Iterator[None]:
    """Ctrl-C always stops: Python raises KeyboardInterrupt wherever the main thread is, and one
    that lands in a finalizer or a callback is printed as "Exception ignored" and lost (the stage
    then went on and exited 0). Every SIGINT is remembered, and re-raised after the block."""
    seen: list[int] = []

    def handler(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:
        raise KeyboardInterrupt
