"""Atomic writes: a reader (or a crash) never sees a half-written output. Reading what another
stage wrote: a missing or damaged file becomes one clear line that names the stage to re-run."""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from exigo.core.errors import ExigoError


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # mkstemp creates 0600; outputs get the usual permissions


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class WriteError(ExigoError):
    """An output could not be written (full disk, read-only or vanished folder); nothing was."""

    def __init__(self, path: Path, reason: str, fix: str) -> None:
        super().__init__(f"{path}: {reason}; {fix}")
        self.path, self.reason = path, reason


def human_size(n: float) -> str:
    """1234567 -> '1.2 MB'."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _free_space(folder: Path) -> int | None:
    for candidate in (folder, *folder.parents):  # the folder itself may be what went missing
        with contextlib.suppress(OSError):
            return shutil.disk_usage(candidate).free
    return None


def write_error(path: Path, exc: OSError, size: int | None = None) -> WriteError:
    """One line for an output that could not be written: which file, why, what it needed."""
    if exc.errno in NO_SPACE:
        free = _free_space(path.parent)
        need = f"needed {human_size(size)}" if size is not None else "size not known in advance"
        have = f", {human_size(free)} free there" if free is not None else ""
        return WriteError(
            path, f"no space left on device ({need}{have})", "free some space and run again"
        )
    return WriteError(
        path, f"cannot write ({exc.strerror or exc})", "check the folder and run again"
    )


@contextlib.contextmanager
def atomic_path(path: Path | str, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds.

    A full disk (or a read-only or vanished folder) becomes a WriteError naming `path` (and
    `size`, the bytes it needed, when known); the temporary file is removed either way, and an
    existing `path` is left as it was."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc, size) from None
    try:
        try:
            yield Path(tmp)
        except OSError as exc:
            if exc.errno in NO_SPACE:  # whatever was writing, the disk is full
                raise write_error(path, exc, size) from None
            raise
        try:
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        except OSError as exc:
            raise write_error(path, exc, size) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@contextlib.contextmanager
def restored_on_failure(
    paths: Sequence[Path], previous: Path, on_stale: Callable[[], None] = lambda: None
) -> Iterator[None]:
    """The block rewrites `paths` (files or folders) as one set: if it fails or is interrupted,
    they are put back as they were before it, so a workspace never pairs one run's files with
    another's. A process killed inside the block (kill -9) cannot do that itself: the copy it
    left at `previous` is put back the next time the block is entered (`on_stale` is told).

    The copy is made first and committed by renaming its folder into place, so a kill while
    copying leaves the workspace as it was. Putting back moves each file (no space needed) and
    can be cut off and redone: what was put back already is left alone."""
    if previous.exists():
        _put_back(paths, previous)
        on_stale()
    _copy_aside(paths, previous)
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):  # else the next entry puts them back
            _put_back(paths, previous)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _copy_aside(paths: Sequence[Path], previous: Path) -> None:
    saving = previous.with_name(f"{previous.name}.saving")
    shutil.rmtree(saving, ignore_errors=True)  # left by a kill while copying: never committed
    where: dict[str, str | None] = {}
    try:
        saving.mkdir(parents=True)
        for i, path in enumerate(paths):
            where[str(path)] = str(i) if path.exists() else None
            if path.is_dir():
                shutil.copytree(path, saving / str(i), symlinks=False)
            elif path.exists():
                shutil.copy2(path, saving / str(i))
        (saving / "where.json").write_text(json.dumps(where))
        os.replace(saving, previous)
    except OSError as exc:
        shutil.rmtree(saving, ignore_errors=True)
        raise write_error(previous, exc) from None


def _put_back(paths: Sequence[Path], previous: Path) -> None:
    where = json.loads((previous / "where.json").read_text())
    for path in paths:
        copy = where.get(str(path))
        if copy is not None and not (previous / copy).exists():
            continue  # moved back by a put-back that was cut off
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        if copy is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(previous / copy, path)  # a rename; a copy, then removal, across disks
    shutil.rmtree(previous)


def _missing(path: Path, made_by: str) -> ExigoError:
    return ExigoError(f"{path}: missing; run the {made_by} stage first (dvc repro {made_by})")


def read_json(path: Path | str, made_by: str) -> Any:
    """A JSON file another stage wrote; missing or broken becomes one clear error."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise _missing(path, made_by) from None
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for binary garbage
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


def unreadable(path: Path | str, why: str, made_by: str) -> ExigoError:
    """The one line for a damaged input: what is wrong, and the stage that rewrites it."""
    return ExigoError(f"{path}: unreadable ({why}); run dvc repro {made_by} again")


_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # torch names the callable it refused


def _calls_code(path: Path) -> bool:
    """A bare pickle that imports or calls something (read op by op by pickletools; nothing in it
    is run)."""
    import pickletools

    calls = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"}
    seen: set[str] = set()
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            while fh.tell() < size:  # torch's old format: several pickles one after another
                seen |= {op.name for op, _, _ in pickletools.genops(fh)}
    except Exception:  # not (only) pickles: random bytes, say
        return False
    return bool(seen & calls)


def load_torch(path: Path | str, made_by: str) -> Any:
    """torch.load(weights_only=True) of a file another stage wrote, with clear errors."""
    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols of foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise _missing(path, made_by) from None
    # A damaged file fails in many ways depending on where it was cut (RuntimeError from the zip
    # reader, EOFError, IndexError, OSError EINVAL from a seek past the end, UnpicklingError for
    # anything but plain tensors and containers...): every one means "rewrite it".
    except Exception as exc:
        raise unreadable(path, _why_not_torch(path, exc, made_by), made_by) from None


def _why_not_torch(path: Path, exc: Exception, made_by: str) -> str:
    """What is wrong with a file torch.load(weights_only=True) refused, in a few words. Never
    torch's own advice, which suggests turning the safe load off."""
    text = str(exc)
    if unsafe := _UNSAFE_GLOBAL.search(text):  # a pickle that calls something when loaded
        return f"unsafe content refused: it would run {unsafe[1]} when loaded"
    with contextlib.suppress(OSError):
        with path.open("rb") as fh:
            head = fh.read(4)
        if not head:
            return "empty file"
        if head != b"PK\x03\x04":  # not torch.save's zip archive: random bytes, or a bare
            if _calls_code(path):  # pickle (torch's old format), which torch stops at its framing
                return "unsafe content refused: it would run code when loaded"
            return f"not a file exigo's {made_by} stage wrote"
    if "Weights only load failed" in text:
        return f"not a file exigo's {made_by} stage wrote"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:200]


def require(obj: Any, keys: Sequence[str], path: Path | str, made_by: str) -> None:
    """Check that `obj` (parsed from `path`) holds every dotted key, e.g. "confused.top1.true"."""
    for key in keys:
        node = obj
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise unreadable(path, f"no '{key}'", made_by)
            node = node[part]


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path, size=len(data)) as tmp:
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
