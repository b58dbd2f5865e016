"""The MLflow store the `track` stage logs to, and what can go wrong with it.

A local SQLite file (one machine) or a tracking server (a team). Every failure becomes one
`ExigoError` line that names the store, the cause and the fix; nothing here prints a credential.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from exigo.core.envvars import read_env
from exigo.core.errors import ExigoError

RETRY_AGAIN = "then run dvc repro again (the DVC outputs are kept; the run is logged then, once)"
# What MLflow logs on its own while it opens and writes a store: a failed SQL statement with its
# traceback, SQLAlchemy's connection retries, alembic's migrations. Held (errors.held_logs): a
# failure is translate()'s one line.
STORE_LOGGERS = ("mlflow", "alembic", "sqlalchemy", "sqlalchemy.engine", "huey")


def redact(url: str) -> str:
    """A URL without its user:password@ part (safe to print or log)."""
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def check_uri(uri: str) -> str:
    """`uri`, if MLflow has a store for its scheme (its registry says which it has); else one
    line that names MLFLOW_TRACKING_URI, the scheme and those MLflow supports."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry as stores
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException
    from mlflow.utils.uri import get_uri_scheme

    try:
        stores.get_store_builder(uri)
    except UnsupportedModelRegistryStoreURIException:
        supported = ", ".join(f"{scheme}://" for scheme in stores._registry if scheme)
        raise ExigoError(
            f"MLFLOW_TRACKING_URI={redact(uri)}: MLflow has no store for the scheme "
            f"'{get_uri_scheme(uri)}' (it supports {supported}, or a local folder); set it to "
            "your server (http://host:5000), or unset it to log to the project's mlflow.db"
        ) from None
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///...` store, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def describe(uri: str) -> str:
    """How messages name a store: its file, or its server's URL."""
    path = sqlite_path(uri)
    return str(path) if path else redact(uri)


def mlflow_client_defaults() -> None:
    """MLflow settings for a pipeline stage; the user's own settings win.

    MLflow retries an unreachable server 7 times with a doubling backoff (minutes): a stage
    should say so in seconds. And `track` prints its own link to the run (in the UI's
    model-training mode): MLflow's "View run / View experiment" lines for a server would repeat
    it, the experiment's into the UI's GenAI mode."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Beside a local SQLite store, a file lock: parallel `dvc queue start -j N` workers log one
    at a time instead of failing with "database is locked". Waiting says what for, and gives up
    after EXIGO_MLFLOW_LOCK_TIMEOUT seconds (600 by default) with a clear message."""
    from filelock import FileLock, Timeout

    path = sqlite_path(uri)
    if path is None:
        yield
        return
    lock = FileLock(str(path) + ".lock")
    timeout = read_env().EXIGO_MLFLOW_LOCK_TIMEOUT
    try:
        with translate(uri):
            lock.acquire(timeout=0)
    except Timeout:
        print(
            f"waiting for {lock.lock_file}: another process is logging to {path} "
            f"(giving up after {timeout:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise ExigoError(
                f"MLflow store {path}: gave up after {timeout:.0f} s waiting for "
                f"{lock.lock_file}, held by another process that is still logging; let it "
                f"finish (or stop it), {RETRY_AGAIN}"
            ) from None
    try:
        yield
    finally:
        lock.release()


def ensure_sqlite_store(uri: str, artifact_root: str) -> None:
    """Create a new SQLite store beside its final path and move it into place only when all its
    tables exist: a full disk or a kill while creating it never leaves a half-made store."""
    path = sqlite_path(uri)
    if path is not None and path.exists() and not path.is_file():
        # SQLite would fail on it only after MLflow's retries (about 100 s of them)
        raise ExigoError(
            f"MLflow store {path}: a {'folder' if path.is_dir() else 'special file'}, not an "
            f"SQLite file; move it aside (mv {path} {path}.moved) so that a new store is "
            f"created, {RETRY_AGAIN}"
        )
    if path is None or path.exists():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.creating")  # unique: never reused
    try:
        with translate(uri):
            store = SqlAlchemyStore(f"sqlite:///{tmp}", artifact_root)
            store.engine.dispose()
            os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _first_line(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), text)
    return line if len(line) <= 200 else line[:197] + "..."


def explain(exc: BaseException, uri: str) -> str | None:
    """One line for a failure of the store at `uri`, or None if it is not a store failure."""
    store = describe(uri)
    chain = list(_chain(exc))
    text = " | ".join(str(e) for e in chain)
    low = text.lower()
    path = sqlite_path(uri)
    if any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain) or (
        "database or disk is full" in low or "no space left" in low
    ):
        return f"MLflow store {store}: no space left on device; free some space, {RETRY_AGAIN}"
    if path is not None:
        if (
            "readonly database" in low
            or "read-only" in low
            or any(isinstance(e, PermissionError) for e in chain)
        ):
            return (
                f"MLflow store {path}: read-only ({_first_line(str(chain[-1]))}); make the file "
                f"and its folder writable (chmod u+w {path} {path.parent}), {RETRY_AGAIN}"
            )
        if "not a database" in low or "malformed" in low or "file is encrypted" in low:
            return (
                f"MLflow store {path}: not a readable SQLite database (corrupt); move it aside "
                f"(mv {path} {path}.corrupt) so that a new store is created, or restore it from a "
                f"backup, {RETRY_AGAIN}"
            )
        if "already exists" in low or "no such table" in low or "alembic" in low:
            return (
                f"MLflow store {path}: incomplete, its creation was cut off "
                f"({_first_line(str(chain[-1]))}); it cannot hold runs: move it aside "
                f"(mv {path} {path}.incomplete), {RETRY_AGAIN}"
            )
        if "unable to open database" in low:
            return (
                f"MLflow store {path}: cannot be opened ({_first_line(str(chain[-1]))}); check "
                f"that its folder exists and is writable, {RETRY_AGAIN}"
            )
        return None
    # A status MLflow was given, or the one urllib3 gave up on after its retries
    code = re.search(r"error code (\d{3})|too many (\d{3}) error responses", text)
    status = int(code.group(1) or code.group(2)) if code else None
    if status == 401:
        return (
            f"MLflow server {store} refused the credentials (401 unauthorized); set "
            f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it, "
            f"{RETRY_AGAIN}"
        )
    if status == 403:
        return (
            f"MLflow server {store}: permission denied (403) for user "
            f"{os.environ.get('MLFLOW_TRACKING_USERNAME', '(none)')}; ask its admin for EDIT "
            f"permission on the experiment, {RETRY_AGAIN}"
        )
    unreachable = (
        "connection refused",
        "failed to establish a new connection",
        "max retries exceeded",
        "timed out",
        "name or service not known",
        "connectionerror",
    )
    if status is None and any(s in low for s in unreachable):
        return (
            f"MLflow server {store} unreachable ({_reason(text)}); start it, or fix "
            f"MLFLOW_TRACKING_URI, {RETRY_AGAIN}"
        )
    if status in (404, 405) or "expecting value" in low or "json" in low:
        return (
            f"MLFLOW_TRACKING_URI={store} is not an MLflow tracking server "
            f"({'HTTP ' + str(status) if status else 'its answer is not MLflow JSON'}); point it "
            f"at one (mlflow server ...) or unset it to log to the local mlflow.db, {RETRY_AGAIN}"
        )
    if status is not None and status >= 500:
        return (
            f"MLflow server {store} answered HTTP {status} (an error on the server); check its "
            f"log, {RETRY_AGAIN}"
        )
    return None


def _reason(text: str) -> str:
    for pattern in ("Connection refused", "timed out", "Name or service not known"):
        if pattern.lower() in text.lower():
            return pattern.lower()
    return "no connection"


@contextlib.contextmanager
def translate(uri: str) -> Iterator[None]:
    """Turn a store failure inside the block into one ExigoError line (anything else passes)."""
    try:
        yield
    except ExigoError:
        raise
    except Exception as exc:  # MLflow, SQLAlchemy, requests and OS errors all come through here
        message = explain(exc, uri)
        if message is None:
            raise
        raise ExigoError(message) from None
