"""Share a DVC run-cache with a team: `exigo push`.

`dvc push --run-cache` sends only the run-cache's records (`runs/`: which deps and params gave
which output hashes), not the outputs they name. Those reach the remote only when a pushed
revision's `dvc.lock` names them, and outputs marked `cache: false` (metrics, plot CSVs) never do,
although DVC keeps them in the local cache for its run-cache. Another machine's
`dvc exp run --pull` then finds the record, misses an output, and trains again. `exigo push`
pushes the workspace, the records, and every output the records name, all through DVC's own API.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from exigo.core.errors import ExigoError, held_logs
from exigo.track.store import redact


@dataclass
class Pushed:
    remote: str  # its URL, credentials removed
    records: int  # run-cache records sent
    files: int  # files uploaded (outputs the remote did not have yet)


def _remote_url(repo, name: str | None) -> tuple[str, str]:
    """(name, URL without credentials) of `name`, or of the default remote."""
    name = name or repo.config["core"].get("remote")
    if not name:
        raise ExigoError(
            "no DVC remote: add one first (dvc remote add -d storage s3://bucket/path, or a "
            "shared folder), see docs/team.md, 'Working as a team'"
        )
    try:
        return name, redact(str(repo.config["remote"][name]["url"]))
    except KeyError:
        raise ExigoError(f"DVC remote '{name}' is not configured (dvc remote list)") from None


# DVC's loggers (dvc_data's and dvc_objects' print each failed file on its own line, with its
# traceback): held, and the user gets one line from us instead, with the first cause they gave.
DVC_LOGGERS = ("dvc", "dvc_data", "dvc_objects")


def push(root: Path, remote: str | None = None, jobs: int | None = None) -> Pushed:
    """`dvc push --run-cache`, plus the outputs every run-cache record names."""
    from dvc.fs import HTTPFileSystem
    from dvc.repo import Repo

    if jobs is not None and jobs < 1:
        raise ExigoError(f"--jobs: at least 1 parallel upload (got {jobs})")
    previous = Path.cwd()
    os.chdir(root)  # DVC builds the records' stages relative to the working directory
    try:
        with Repo(str(root)) as repo:
            name, url = _remote_url(repo, remote)
            with held_logs(*DVC_LOGGERS) as held:
                try:
                    odb = repo.cloud.get_remote_odb(name)
                    if isinstance(odb.fs, HTTPFileSystem):
                        raise ExigoError(_http_remote(name, url))
                    odb.fs.exists(odb.path)  # one probe: seconds, not a retry per file
                    files = repo.push(remote=name, jobs=jobs, run_cache=True)
                    records = repo.stage_cache.push(name)  # already sent; lists them
                    files -= len(records)  # repo.push counts the records too
                    used = repo.stage_cache.get_used_objs(records, remote=name, jobs=jobs)
                    for odb, objs in used.items():
                        result = repo.cloud.push(objs, jobs=jobs, remote=name, odb=odb)
                        if result.failed:
                            raise OSError(f"{len(result.failed)} files failed to upload")
                        files += len(result.transferred)
                except ExigoError:
                    raise
                except Exception as exc:  # DVC, the S3 client or the file system: one line
                    raise ExigoError(_remote_error(name, url, exc, held.first_error())) from None
    finally:
        os.chdir(previous)
    return Pushed(url, len(records), files)


def _http_remote(name: str, url: str) -> str:
    """DVC keeps no run-cache on an HTTP remote (it has no way to list one there): `push`
    skips it, and `dvc exp run --pull` warns and runs every stage here."""
    return (
        f"DVC remote '{name}' ({url}): an HTTP remote cannot hold DVC's run-cache, which is "
        "what exigo push shares; push to an S3 bucket or a shared folder (-r), or use dvc push "
        "for the outputs alone (nothing was sent)"
    )


def _remote_error(name: str, url: str, exc: BaseException, logged: str | None = None) -> str:
    """One line for a failed push; `logged` is the first error DVC logged (the exception may
    only count the files that failed)."""
    text = " | ".join([*(str(e) for e in _causes(exc)), logged or ""]).lower()
    if any(s in text for s in ("access denied", "accessdenied", "read-only", "permission denied")):
        cause, fix = (
            "read-only for you (access denied)",
            "ask for write access, or push to another remote (-r)",
        )
    elif any(s in text for s in ("could not connect", "connection refused", "unreachable",
                                 "name or service not known", "timed out", "endpoint",
                                 "cannot connect", "connect call failed")):  # fmt: skip
        cause, fix = "unreachable", "check the network, its URL and endpointurl (dvc remote list)"
    else:
        cause, fix = _short(logged or exc), "check its URL and credentials (dvc remote list)"
    return (
        f"DVC remote '{name}' ({url}): {cause}; {fix}, then run exigo push again "
        "(nothing local was changed)"
    )


def _causes(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _short(exc: BaseException | str) -> str:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line[:200]
