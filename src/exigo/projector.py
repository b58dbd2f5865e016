"""TensorBoard's projector format (features, metadata, sprite) and scalars, via SummaryWriter."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def write_logs(
    log_dir: Path,
    embeddings: dict[str, np.ndarray],
    metadata: Sequence[Sequence[str]],
    header: Sequence[str],
    images: torch.Tensor,  # (N, 28, 28) uint8: the sprite, un-normalised
    scalars: Sequence[dict[str, float]] = (),
) -> None:
    """Write a TensorBoard log dir with one projector embedding per entry and per-epoch scalars.

    Written into a temporary sibling first, then swapped in, so `log_dir` is never half-written.
    """
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    tmp = log_dir.with_name(f".{log_dir.name}.tmp")
    old = log_dir.with_name(f".{log_dir.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    sprite = images.unsqueeze(1).float().div(255)  # (N, 1, 28, 28) in [0, 1]
    with SummaryWriter(log_dir=str(tmp)) as writer:
        for tag, matrix in embeddings.items():
            writer.add_embedding(
                torch.from_numpy(np.ascontiguousarray(matrix)),
                metadata=[list(row) for row in metadata],
                metadata_header=list(header),
                label_img=sprite,
                tag=tag,
            )
        for row in scalars:
            step = int(row["epoch"])
            for key, value in row.items():
                if key != "epoch":
                    split, _, name = key.partition("_")  # train_loss -> loss/train
                    writer.add_scalar(f"{name}/{split}" if name else key, value, step)
    if log_dir.exists():
        log_dir.rename(old)
    tmp.rename(log_dir)
    shutil.rmtree(old, ignore_errors=True)
