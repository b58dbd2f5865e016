"""MLflow tracking: one run per `dvc repro` / `dvc exp run`, logged from the files DVC tracks.

The `track` stage runs last and reads everything from disk (params, metrics, per-epoch history,
plot images, the checkpoint), so the run is complete even when DVC restored the upstream stages
from its run-cache without running their scripts. It has no outputs, so DVC never restores it from
the run-cache: it runs exactly when something it depends on changed, and a no-op repro logs nothing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

EXP_TMP_PARTS = (".dvc", "tmp", "exps")
KIND_TAG = "mlflow.experimentKind"


def project_root() -> Path:
    """The project's root: DVC_ROOT (DVC points it at the parent repo even for --temp and queued
    experiments, which run in a copy under .dvc/tmp/exps), else the working directory."""
    root = Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()
    parts = root.parts
    for i in range(len(parts) - len(EXP_TMP_PARTS)):
        if parts[i : i + len(EXP_TMP_PARTS)] == EXP_TMP_PARTS:  # a copy: anchor on its parent
            return Path(*parts[:i])
    return root


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI if set, else an SQLite store at <project root>/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


def experiment_name(root: Path) -> str:
    """One MLflow experiment per project: MLFLOW_EXPERIMENT_NAME, else the project folder's name."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or root.name


def git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def numeric_leaves(flat: dict[str, Any]) -> dict[str, float]:
    """Keep the numbers (not bools) of a flat dict: what MLflow accepts as metrics."""
    return {
        k: float(v)
        for k, v in flat.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def run_tags(cwd: Path) -> dict[str, str]:
    tags = {"mlflow.source.type": "PROJECT", "mlflow.source.name": "dvc repro"}
    if commit := git_commit(cwd):
        tags["mlflow.source.git.commit"] = commit
    if exp := os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = exp
        tags["mlflow.source.name"] = "dvc exp run"
    if baseline := os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = baseline
    return tags


def store_lock(uri: str):
    """A file lock beside a local SQLite store: parallel `dvc queue start -j N` workers log one at
    a time instead of failing with "database is locked" (or racing to create the tables)."""
    import contextlib

    from filelock import FileLock

    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    return FileLock(uri.removeprefix("sqlite:///") + ".lock", timeout=600)


def log_run(
    params: dict[str, Any],
    metrics: dict[str, float],
    history: list[dict[str, float]],
    artifacts: dict[str, Path],
    model: Any | None = None,
    input_example: Any | None = None,
    root: Path | None = None,
    cwd: Path | None = None,
) -> str:
    """Log one complete run; returns its run id."""
    root = root or project_root()
    cwd = cwd or Path.cwd()
    uri = tracking_uri(root)
    with store_lock(uri):
        return _log_run(uri, root, cwd, params, metrics, history, artifacts, model, input_example)


def _log_run(
    uri: str,
    root: Path,
    cwd: Path,
    params: dict[str, Any],
    metrics: dict[str, float],
    history: list[dict[str, float]],
    artifacts: dict[str, Path],
    model: Any | None,
    input_example: Any | None,
) -> str:
    import mlflow
    from mlflow.entities import Metric

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(experiment_name(root))
    client = mlflow.MlflowClient()
    if KIND_TAG not in experiment.tags:  # `mlflow ui` opens on training runs, not GenAI traces
        client.set_experiment_tag(experiment.experiment_id, KIND_TAG, "custom_model_development")
    tags = run_tags(cwd)
    with mlflow.start_run(run_name=tags.get("dvc.exp_name"), tags=tags) as run:
        run_id = run.info.run_id
        now = int(run.info.start_time)
        values = [Metric(k, v, now, 0) for k, v in metrics.items()]
        for row in history:  # per-epoch curves, step = epoch
            step = int(row["epoch"])
            values += [Metric(k, v, now, step) for k, v in row.items() if k != "epoch"]
        mlflow.log_params({k: "null" if v is None else v for k, v in params.items()})
        for i in range(0, len(values), 1000):  # MLflow's limit per batch
            client.log_batch(run_id, metrics=values[i : i + 1000])
        for dest, path in artifacts.items():
            if path.is_dir():
                mlflow.log_artifacts(str(path), dest)
            elif path.exists():
                mlflow.log_artifact(str(path), dest)
        if model is not None:
            import mlflow.pytorch

            mlflow.pytorch.log_model(
                model,
                name="model",
                input_example=input_example,
                pip_requirements=[f"torch=={_version('torch')}"],
            )
    return run_id


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package).split("+")[0]
