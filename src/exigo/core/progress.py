"""Rich progress bars and the one-line epoch summary."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from exigo.models.training import EpochStats


def progress_bar() -> Progress:
    """A progress bar that counts images; it degrades to nothing when stdout is not a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("img"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def epoch_line(s: EpochStats, epochs: int) -> str:
    """`Epoch 1/2  train loss 0.211  val loss 0.071  val acc 0.978`"""
    return (
        f"Epoch {s.epoch}/{epochs}  train loss {s.train_loss:.3f}  train acc {s.train_acc:.3f}  "
        f"val loss {s.val_loss:.3f}  val acc {s.val_acc:.3f}"
    )
