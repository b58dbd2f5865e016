"""One trial's process: `dvc exp run` in its own process group, its log, its per-epoch values
reported to Optuna while it trains, and a clean stop when the pruner (or Ctrl-C) says so."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from exigo.sweep.study import INTERRUPTED
from exigo.sweep.workspace import last_error

# DVCLive's per-epoch values of the train stage (one row per epoch: timestamp, step, value),
# appended while it trains, in the experiment's working directory: <dir>/<metric>.tsv.
EPOCH_VALUES_DIR = Path("metrics/train/plots/metrics")
POLL_S = 1.0
STOP_GRACE_S = (30.0, 10.0)  # after SIGINT, then after SIGTERM, before SIGKILL


class EpochReader:
    """New complete rows of a DVCLive .tsv, as (step, value), each row once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.column = path.stem
        self.last_step: int | None = None

    def new_rows(self) -> list[tuple[int, float]]:
        try:
            text = self.path.read_text()
        except (FileNotFoundError, IsADirectoryError):
            return []
        lines = text.split("\n")[:-1]  # the piece after the last newline may be half-written
        if not lines:
            return []
        header = lines[0].split("\t")
        if "step" not in header or self.column not in header:
            return []
        at_step, at_value = header.index("step"), header.index(self.column)
        rows = []
        for line in lines[1:]:
            cells = line.split("\t")
            try:
                step, value = int(cells[at_step]), float(cells[at_value])
            except (IndexError, ValueError):
                continue
            if self.last_step is None or step > self.last_step:
                rows.append((step, value))
                self.last_step = step
        return rows


@dataclass(frozen=True)
class Outcome:
    state: TrialState  # COMPLETE (the command succeeded), PRUNED or FAIL
    reason: str | None = None  # why it failed, or where it was pruned


def report(
    trial: Any, rows: list[tuple[int, float]], last_step: int | None, running: bool
) -> int | None:
    """Tell Optuna the new per-epoch values; the step to prune at, if the pruner says so.

    The last epoch is never pruned: training is over by then, so stopping saves nothing."""
    for step, value in rows:
        trial.report(value, step)
        final = last_step is not None and step >= last_step
        if running and not final and trial.should_prune():
            return step
    return None


def run_watched(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    trial: Any,
    reader: EpochReader,
    last_step: int | None,
    stop: threading.Event,
) -> Outcome:
    """Run a trial's command to its end, or stop its process group when pruned or interrupted."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl-C reaches the sweep, which stops it
        )
        try:
            while True:
                try:
                    returncode: int | None = proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    returncode = None
                step = report(trial, reader.new_rows(), last_step, running=returncode is None)
                if step is not None:
                    stop_group(proc)
                    return Outcome(TrialState.PRUNED, f"pruned at step {step}")
                if returncode is not None:
                    break
                if stop.is_set():
                    stop_group(proc)
                    return Outcome(TrialState.FAIL, INTERRUPTED)
        except BaseException:
            stop_group(proc)
            raise
    if returncode != 0:
        return Outcome(TrialState.FAIL, last_error(log_path.read_text(errors="replace")))
    return Outcome(TrialState.COMPLETE)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGINT to the whole group (DVC and the stage it runs), as Ctrl-C would; escalate to
    SIGTERM and SIGKILL if it does not go. Returns once no process of the group is left."""
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S[0]), (signal.SIGTERM, STOP_GRACE_S[1])):
        if not _signal_group(proc.pid, sig) or _wait_group(proc, grace):
            proc.wait()  # gone already, or gone now: reap the leader
            return
    _signal_group(proc.pid, signal.SIGKILL)
    _wait_group(proc, 10.0)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _wait_group(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for the leader and then every other member of its group; True if all are gone."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _signal_group(proc.pid, 0):
            return True
        time.sleep(0.1)
    return proc.poll() is not None and not _signal_group(proc.pid, 0)
