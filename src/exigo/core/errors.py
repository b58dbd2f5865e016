"""User-facing errors: one clear line, no traceback."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator


class ExigoError(Exception):
    """An error the user can act on; its message is printed as it is."""


class ParamsError(ExigoError):
    """params.yaml holds an unknown key, a wrong type or an out-of-range value."""


class DownloadError(ExigoError):
    """No source could deliver a verified copy of a dataset file."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); an ExigoError becomes `error: ...` on stderr and exit code 2, and a
    Ctrl-C `interrupted` and 130 until the process is gone (see _exit_now)."""
    try:
        main()
        _exit_now()
    except ExigoError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def _exit_now() -> None:
    """End a stage that succeeded, with Ctrl-C still its `interrupted` line.

    Python's own exit removes its Ctrl-C handler, then spends seconds freeing torch's and
    MLflow's modules: a Ctrl-C there killed `track` with 130 and no line, after its run was
    logged. So the exit's work is done here (threads joined, atexit callbacks, with a Ctrl-C
    held until they are done: one inside them would be printed as "Exception ignored" and
    lost), and the freeing, which nothing needs, is skipped."""
    threading._shutdown()  # as Python's exit: thread pools told to stop, other threads joined
    with interrupts_always_stop(wait=True):
        atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class HeldLogs(logging.Handler):
    """The records of other tools' loggers, held instead of printed (see held_logs)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def first_error(self) -> str | None:
        """The first error held, with its exception's text: the cause, when the exception that
        reaches exigo only counts the failures."""
        for record in self.records:
            if record.levelno >= logging.ERROR:
                cause = record.exc_info[1] if record.exc_info else None
                return f"{record.getMessage()} {cause or ''}".strip()
        return None


@contextlib.contextmanager
def held_logs(*names: str, replay: bool = False) -> Iterator[HeldLogs]:
    """Hold what the loggers `names` (and their children) log inside the block, instead of
    printing it: a failure there is exigo's one line, not the tool's tracebacks and retries
    before it. With `replay`, a block that succeeds prints what was held, as it would have."""
    held = HeldLogs()
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers, logger.propagate))
        logger.handlers, logger.propagate = [held], False
    ok = False
    try:
        yield held
        ok = True
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate
    if ok and replay:
        for record in held.records:
            logging.getLogger(record.name).handle(record)


@contextlib.contextmanager
def interrupts_always_stop(wait: bool = False) -> Iterator[None]:
    """Ctrl-C always stops: Python raises KeyboardInterrupt wherever the main thread is, and one
    that lands in a finalizer or a callback is printed as "Exception ignored" and lost (the stage
    then went on and exited 0). Every SIGINT is remembered, and re-raised after the block.
    With `wait`, a Ctrl-C is only remembered: the block runs to its end first."""
    seen: list[int] = []

    def handler(signum, frame):
        seen.append(signum)
        if not wait:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:
        raise KeyboardInterrupt
