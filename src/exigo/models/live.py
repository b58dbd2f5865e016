"""DVCLive in the train stage: live per-epoch metrics for `dvc exp show`, VS Code and DVC Studio.

DVCLive writes, under LIVE_DIR (declared in dvc.yaml, cache: false):
    metrics.json                 the latest epoch while training; the best epoch's at the end
    plots/metrics/<name>.tsv     one row per epoch (step = epoch), for `dvc plots` and MLflow
It never edits dvc.yaml (ours) and never saves experiments itself (DVC does, around the stage).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exigo.core.errors import ExigoError

if TYPE_CHECKING:
    from dvclive import Live

    from exigo.models.training import EpochStats

LIVE_DIR = Path("metrics/train")
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


@contextmanager
def live_logger(live_dir: Path = LIVE_DIR, monitor_system: bool = False) -> Iterator[Live]:
    """A DVCLive logger that leaves dvc.yaml alone and lets DVC save the experiment.

    monitor_system adds DVCLive's system/* metrics (CPU, RAM, disk; GPU where CUDA is)."""
    from dvclive import Live

    if monitor_system:
        import dvclive.monitor_system
        import torch

        # With NVIDIA's Python bindings installed but no driver, DVCLive's sampler fails on the
        # GPU before it records the CPU, and prints a traceback: ask it for GPUs only where CUDA is.
        dvclive.monitor_system.GPU_AVAILABLE &= torch.cuda.is_available()

    from scmrepo.exceptions import SCMError

    try:
        live = Live(
            str(live_dir),
            dvcyaml=False,  # the stage's metrics and plots are declared in our dvc.yaml
            save_dvc_exp=False,  # `dvc exp run` saves the experiment, not the stage
            report=None,
            monitor_system=monitor_system,
        )
    except SCMError as exc:  # a `git init` with no commit yet: DVCLive reads HEAD
        raise ExigoError(
            f"git: {exc}: DVCLive needs the project's first commit; run "
            "git add -A && git commit -m 'first commit', then run again"
        ) from None
    with live:
        yield live


def log_epoch(live: Live, stats: EpochStats) -> None:
    """One epoch's numbers at step = epoch; next_step() writes metrics.json for the live view."""
    live.step = stats.epoch
    for name in EPOCH_METRICS:
        live.log_metric(name, round(getattr(stats, name), 6))
    live.next_step()


def set_summary(live: Live, summary: dict[str, Any], last_epoch: int) -> None:
    """What metrics.json holds once training ends (DVCLive writes it when the logger closes)."""
    live.summary = {**summary, "step": last_epoch}


def read_history(live_dir: Path | str = LIVE_DIR, made_by: str = "train") -> list[dict[str, float]]:
    """The per-epoch rows DVCLive wrote: [{'epoch': 1, 'train_loss': ..., ...}, ...]."""
    folder = Path(live_dir) / "plots" / "metrics"
    rows: dict[int, dict[str, float]] = {}
    for name in EPOCH_METRICS:
        path = folder / f"{name}.tsv"
        try:
            with path.open(newline="") as fh:
                for record in csv.DictReader(fh, delimiter="\t"):
                    epoch = int(record["step"])
                    rows.setdefault(epoch, {"epoch": epoch})[name] = float(record[name])
        except FileNotFoundError:
            raise ExigoError(
                f"{path}: missing; run the {made_by} stage first (dvc repro {made_by})"
            ) from None
        except (KeyError, ValueError, TypeError, csv.Error) as exc:
            raise ExigoError(
                f"{path}: not a DVCLive metric history ({exc!r}); run dvc repro {made_by} again"
            ) from None
    incomplete = [e for e, row in rows.items() if len(row) != len(EPOCH_METRICS) + 1]
    if incomplete:
        raise ExigoError(
            f"{folder}: epoch {incomplete[0]} is missing from some of "
            f"{', '.join(EPOCH_METRICS)}; run dvc repro {made_by} again"
        )
    return [rows[e] for e in sorted(rows)]
