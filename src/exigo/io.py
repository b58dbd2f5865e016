"""Atomic writes: a reader (or a crash) never sees a half-written output."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from exigo.errors import ExigoError


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # mkstemp creates 0600; outputs get the usual permissions


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _missing(path: Path, made_by: str) -> ExigoError:
    return ExigoError(f"{path}: missing; run the {made_by} stage first (dvc repro {made_by})")


def read_json(path: Path | str, made_by: str) -> Any:
    """A JSON file another stage wrote; missing or broken becomes one clear error."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise _missing(path, made_by) from None
    except json.JSONDecodeError as exc:
        raise ExigoError(f"{path}: not valid JSON ({exc}); run dvc repro {made_by} again") from None


def read_csv_numbers(path: Path | str, made_by: str) -> list[dict[str, float]]:
    """A numeric CSV another stage wrote (e.g. plots/train/history.csv), one dict per row."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    except FileNotFoundError:
        raise _missing(path, made_by) from None
    except (ValueError, TypeError) as exc:
        raise ExigoError(
            f"{path}: not a numeric CSV ({exc}); run dvc repro {made_by} again"
        ) from None


def load_torch(path: Path | str, made_by: str) -> Any:
    """torch.load(weights_only=True) of a file another stage wrote, with clear errors."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise _missing(path, made_by) from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise ExigoError(
            f"{path}: unreadable ({str(exc).splitlines()[0]}); run dvc repro {made_by} again"
        ) from None


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path | str, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_csv(path: Path | str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def save_torch(path: Path | str, obj: Any) -> None:
    """torch.save, byte-for-byte reproducible (saving to a named file embeds the file's name)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def save_figure(path: Path | str, fig: Any, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically, then close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    finally:
        plt.close(fig)
