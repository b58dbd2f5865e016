"""Rich progress bars."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


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
