"""Where a run came from, as MLflow tags: the git commit, the DVC experiment, the host, the DVC
remote (without credentials), the DVC hashes of the data and the model, and the software it was
trained with (`exigo.env.*`), so that a run found in `mlflow ui` leads to `dvc pull`-able outputs
and the environment that made them. Also the key that makes logging exactly-once."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

from exigo.core import environment
from exigo.core.envvars import read_env
from exigo.track.store import redact

KEY_TAG = "exigo.run_key"  # what the run logs, hashed: one complete run per key
COMPLETE_TAG = "exigo.complete"  # set last: a run without it was cut off and is replaced
SWEEP_TAGS = {"EXIGO_SWEEP_STUDY": "optuna.study", "EXIGO_SWEEP_TRIAL": "optuna.trial"}


def git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def dvc_remote_url(cwd: Path) -> str | None:
    """The URL of the default DVC remote (repo, local, global or system config), credentials
    removed; None without one."""
    try:
        from dvc.config import Config

        config = Config(dvc_dir=str(cwd / ".dvc"))
        name = config["core"].get("remote")
        url = config["remote"][name]["url"] if name else None
    except Exception:  # no DVC repo here, or a config DVC itself would refuse: no tag
        return None
    return redact(str(url)) if url else None


def _lock_outs(lock: dict, stage: str) -> dict[str, str]:
    outs = lock.get("stages", {}).get(stage, {}).get("outs", [])
    return {o["path"]: o["md5"] for o in outs if "md5" in o}


def dvc_hashes(cwd: Path, data_name: str) -> dict[str, str]:
    """The md5s `dvc.lock` records for the data and the model this run used."""
    try:
        lock = yaml.safe_load((cwd / "dvc.lock").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    tags = {}
    if md5 := _lock_outs(lock, "download").get(f"data/{data_name}"):
        tags["dvc.md5.data"] = md5
    for path, md5 in _lock_outs(lock, "train").items():
        if path.startswith("models/"):
            tags[f"dvc.md5.{Path(path).stem}"] = md5  # dvc.md5.model, dvc.md5.init
    return tags


def previous_track(cwd: Path) -> str | None:
    """What `track` last logged successfully here, as `dvc.lock` recorded it (DVC writes the
    stage's entry only after it succeeds): a retry after a failure sees the same value, the next
    change a new one."""
    try:
        lock = yaml.safe_load((cwd / "dvc.lock").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    entry = lock.get("stages", {}).get("track")
    return _digest(entry) if entry else None


def environment_record(cwd: Path) -> dict[str, Any]:
    """The environment `train` recorded beside the model (the machine that trained, also after a
    run-cache restore); this process's own where there is no record."""
    try:
        record = json.loads((cwd / environment.RECORD).read_text())
    except (OSError, ValueError):
        record = None
    return record if isinstance(record, dict) else environment.describe(cwd)


def run_tags(cwd: Path, data_name: str | None = None) -> dict[str, str]:
    """The tags every run carries: source, git commit, DVC experiment, host, remote, hashes,
    the environment, and the sweep's study and trial when a sweep ran it."""
    tags = {"mlflow.source.type": "PROJECT", "mlflow.source.name": "dvc repro"}
    if commit := git_commit(cwd):
        tags["mlflow.source.git.commit"] = commit
    if exp := os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = exp
        tags["mlflow.source.name"] = "dvc exp run"
    if baseline := os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = baseline
    tags["exigo.host"] = socket.gethostname()
    if remote := dvc_remote_url(cwd):
        tags["dvc.remote"] = remote
    if data_name:
        tags.update(dvc_hashes(cwd, data_name))
    tags.update(environment.tags(environment_record(cwd)))
    env = read_env()
    for name, tag in SWEEP_TAGS.items():
        if (value := getattr(env, name)) is not None:
            tags[tag] = str(value)
    return tags


# A retry on the same machine, commit and experiment is the same logging; the remote URL is not
# part of it (adding a remote between two attempts must not log twice).
KEYED_TAGS = (
    "mlflow.source.git.commit",
    "dvc.exp_name",
    "exigo.host",
    "optuna.study",
    "optuna.trial",
    "dvc.md5.model",
)


def run_key(
    params: dict[str, Any],
    metrics: dict[str, float],
    history: list[dict[str, float]],
    tags: dict[str, str],
    previous: str | None,
) -> str:
    """A deterministic key of one logging: what is logged, where it ran, and the last state
    `track` logged. Two attempts at logging the same change share it; a new change, even one
    back to earlier params, does not."""
    keyed = {k: tags.get(k) for k in KEYED_TAGS}
    return _digest(
        {"params": params, "metrics": metrics, "history": history, "tags": keyed, "prev": previous}
    )


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
