"""TensorBoard logs: the projector (features, metadata, sprite) and the training curves.

logs/test_embeddings/   the Projector tab's run: one tensor per feature space, named for what
                        it is, with the test images as thumbnails and their metadata columns
logs/training/          the Scalars tab's run: loss, accuracy and learning rate per epoch
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from exigo.core.outputs import atomic_path

PROJECTOR_RUN = "test_embeddings"
SCALARS_RUN = "training"


def projector_name(name: str) -> str:
    """A class name as the projector's metadata should hold it: one that reads as a number
    ("3") would make the column numeric, which the projector colours on a gradient, not by
    class; such names become "class 3"."""
    try:
        float(name)
    except ValueError:
        return name
    return f"class {name}"


SPRITE_MAX = 8192  # TensorBoard's projector refuses sprites larger than this, in pixels a side


def thumbnail_size(n: int, height: int, width: int) -> tuple[int, int]:
    """Each thumbnail's (H, W) in the sprite: native, unless a square sheet of n of them would
    pass SPRITE_MAX; then scaled down (aspect kept) until it fits."""
    side = int(np.ceil(np.sqrt(max(n, 1))))
    scale = min(1.0, SPRITE_MAX / (side * height), SPRITE_MAX / (side * width))
    return max(1, int(height * scale)), max(1, int(width * scale))


def write_sprite(path: Path, images: torch.Tensor) -> tuple[int, int]:
    """The projector's thumbnails: uint8 (N, C, H, W) tiled row-major into a square PNG, in colour
    for RGB data, at native size unless the sheet would pass SPRITE_MAX. Returns the thumbnail
    (H, W) the projector config must name."""
    from PIL import Image

    n, c, h, w = images.shape
    th, tw = thumbnail_size(n, h, w)
    side = int(np.ceil(np.sqrt(n)))
    sheet = np.zeros((side * th, side * tw, c), dtype=np.uint8)
    for i, img in enumerate(images.numpy()):
        r, col = divmod(i, side)
        tile = img.transpose(1, 2, 0)
        if (th, tw) != (h, w):
            pil = Image.fromarray(tile[:, :, 0] if c == 1 else tile)
            tile = np.asarray(pil.resize((tw, th), Image.Resampling.LANCZOS)).reshape(th, tw, c)
        sheet[r * th : (r + 1) * th, col * tw : (col + 1) * tw] = tile
    with atomic_path(path) as tmp:
        image = Image.fromarray(sheet[:, :, 0], mode="L") if c == 1 else Image.fromarray(sheet)
        image.save(tmp, format="PNG")
    return th, tw


def write_projector(
    run_dir: Path,
    embeddings: dict[str, np.ndarray],  # tensor name -> (N, D)
    metadata: Sequence[Sequence[str]],
    header: Sequence[str],
    images: torch.Tensor,  # (N, C, H, W) uint8: un-normalised thumbnails
) -> None:
    """Files TensorBoard's projector plugin reads (no TensorFlow needed): a TSV per tensor, one
    metadata TSV and one sprite shared by all tensors, and projector_config.pbtxt."""
    from tensorboard.plugins import projector

    run_dir.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in metadata]
    (run_dir / "metadata.tsv").write_text("\n".join(lines) + "\n")
    thumb = write_sprite(run_dir / "sprite.png", images)
    config = projector.ProjectorConfig()
    for i, (name, matrix) in enumerate(embeddings.items()):
        tensor_file = f"tensor{i}.tsv"
        np.savetxt(run_dir / tensor_file, matrix, delimiter="\t", fmt="%.6g")
        emb = config.embeddings.add()
        emb.tensor_name = name
        emb.tensor_path = tensor_file
        emb.tensor_shape.extend(matrix.shape)
        emb.metadata_path = "metadata.tsv"
        emb.sprite.image_path = "sprite.png"
        emb.sprite.single_image_dim.extend(thumb[::-1])  # width, height
    projector.visualize_embeddings(str(run_dir), config)
    # TensorBoard lists a folder as a run only if it holds an event file: write one, with a note
    # on what the tensors are (the Text tab shows it).
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run_dir)) as writer:
        about = "; ".join(
            f"{name}: {m.shape[0]} test images x {m.shape[1]} dims"
            for name, m in embeddings.items()
        )
        writer.add_text("projector", f"Penultimate features in the Projector tab. {about}.")


def write_scalars(run_dir: Path, history: Sequence[dict[str, float]]) -> None:
    """Per-epoch curves: train_loss -> loss/train, val_acc -> acc/val, lr -> lr; step = epoch."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run_dir)) as writer:
        for row in history:
            step = int(row["epoch"])
            for key, value in row.items():
                if key != "epoch":
                    split, _, name = key.partition("_")
                    writer.add_scalar(f"{name}/{split}" if name else key, value, step)


def write_logs(
    log_dir: Path,
    embeddings: dict[str, np.ndarray],
    metadata: Sequence[Sequence[str]],
    header: Sequence[str],
    images: torch.Tensor,
    scalars: Sequence[dict[str, float]] = (),
) -> None:
    """The whole log dir, written into a temporary sibling and swapped in: never half-written."""
    log_dir = Path(log_dir)
    tmp = log_dir.with_name(f".{log_dir.name}.tmp")
    old = log_dir.with_name(f".{log_dir.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    write_projector(tmp / PROJECTOR_RUN, embeddings, metadata, header, images)
    write_scalars(tmp / SCALARS_RUN, scalars)
    if log_dir.exists():
        log_dir.rename(old)
    tmp.rename(log_dir)
    shutil.rmtree(old, ignore_errors=True)
