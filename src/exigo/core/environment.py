"""The software a run computed with, as lineage: the lock file's hash, whether the installed
packages are the ones it locks, and the versions of the packages that shape results.

`train` records it beside the model (`models/environment.json`, a DVC output, so a run-cache
restore brings the record of the machine that trained); `track` logs it as MLflow tags;
`exigo compare` says when two revisions ran in different environments.
"""

from __future__ import annotations

import hashlib
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

LOCK_FILE = "uv.lock"
RECORD = Path("models/environment.json")
# The packages whose versions can change the numbers (and the two that record them).
SHAPING = (
    "torch",
    "torchvision",
    "numpy",
    "captum",
    "opentsne",
    "scikit-learn",
    "dvc",
    "mlflow",
)
MAX_DRIFT = 20  # packages named in the record; the count says how many differ in all


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (`openTSNE` == `opentsne`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, set[str]]:
    """Every package version `uv.lock` pins, by normalised name (some packages have one version
    per Python version)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    with lock.open("rb") as f:
        packages = tomllib.load(f).get("package", [])
    versions: dict[str, set[str]] = {}
    for package in packages:
        if "name" in package and "version" in package:
            versions.setdefault(normalize(package["name"]), set()).add(str(package["version"]))
    return versions


def installed_versions() -> dict[str, str]:
    """The version of every distribution this interpreter imports from."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize(name), dist.version)
    return found


def describe(root: Path) -> dict[str, Any]:
    """This process's environment: Python, platform, the shaping packages' versions, and how the
    installed packages compare with `root/uv.lock` (None where there is no lock file)."""
    installed = installed_versions()
    record: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "packages": {name: installed.get(name) for name in SHAPING},
        "lock": None,
        "locked": None,
        "drift": [],
    }
    lock = root / LOCK_FILE
    try:
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
        pinned = locked_versions(lock)
    except (OSError, ValueError):  # no lock file, or one that is not TOML: nothing to compare
        return record
    drift = sorted(
        f"{name} {version} (lock: {', '.join(sorted(pinned[name]))})"
        for name, version in installed.items()
        if name in pinned and version not in pinned[name]
    )
    record.update(lock=digest, locked=not drift, drift=drift)
    return record


def tags(record: dict[str, Any]) -> dict[str, str]:
    """MLflow tags of a record: `exigo.env.lock`, `.locked` (true, false or no-lock-file),
    `.drift` (what differs from the lock), `.python`, `.platform` and one per shaping package."""
    locked = record.get("locked")
    out = {
        "exigo.env.lock": record.get("lock") or "none",
        "exigo.env.locked": "no-lock-file" if locked is None else str(bool(locked)).lower(),
        "exigo.env.python": str(record.get("python")),
        "exigo.env.platform": str(record.get("platform")),
    }
    drift = record.get("drift") or []
    if drift:
        shown = "; ".join(drift[:MAX_DRIFT])
        more = len(drift) - MAX_DRIFT
        out["exigo.env.drift"] = shown + (f"; and {more} more" if more > 0 else "")
    for name, version in (record.get("packages") or {}).items():
        out[f"exigo.env.{name}"] = version or "not installed"
    return out


def flat(record: dict[str, Any]) -> dict[str, str]:
    """A record as `key: text` pairs that two revisions can be compared by."""
    values = {
        "lock": (record.get("lock") or "none")[:12],
        "locked": str(record.get("locked")),
        "python": str(record.get("python")),
        "platform": str(record.get("platform")),
    }
    for name, version in (record.get("packages") or {}).items():
        values[name] = str(version)
    return values


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """What differs between two records: key -> (old, new)."""
    a, b = flat(old), flat(new)
    return {k: (a.get(k, "—"), b.get(k, "—")) for k in {**a, **b} if a.get(k) != b.get(k)}
