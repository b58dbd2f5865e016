"""MLflow tracking: one run per `dvc repro` / `dvc exp run`, logged from the files DVC tracks.

The `track` stage runs last and reads everything from disk (params, metrics, per-epoch history,
plot images, the checkpoint), so the run is complete even when DVC restored the upstream stages
from its run-cache without running their scripts. It has no outputs, so DVC never restores it from
the run-cache: it runs exactly when something it depends on changed, and a no-op repro logs nothing.

Exactly once: every run carries a key of what it logs (`exigo.run_key`, see `exigo.track.lineage`) and
is tagged `exigo.complete` only after everything is logged. Before logging, a complete run with
the same key means an earlier attempt already did the work (nothing is logged twice); a run with
the key but not complete was cut off (kill -9, Ctrl-C, a full disk, a server that went away) and
is deleted (hidden, with its reason tagged), with the model versions it registered, before the
run is logged again (see exigo.track.model_registry).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exigo.core.errors import ExigoError, held_logs
from exigo.track.lineage import COMPLETE_TAG, KEY_TAG, previous_track, run_key, run_tags
from exigo.track.model_registry import (
    SCORE,
    Registered,
    forget_run,
    model_name,
    register,
    safe_name,
)
from exigo.track.store import (
    STORE_LOGGERS,
    check_uri,
    describe,
    ensure_sqlite_store,
    mlflow_client_defaults,
    sqlite_path,
    store_lock,
    translate,
)

EXP_TMP_PARTS = (".dvc", "tmp", "exps")
KIND_TAG = "mlflow.experimentKind"
RESTORED_TAG = "exigo.restored"  # "true": the model was trained by an earlier run (see below)


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
    """MLFLOW_TRACKING_URI if set (a scheme MLflow has a store for), else an SQLite store at
    <project root>/mlflow.db."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return check_uri(uri) if uri else f"sqlite:///{root / 'mlflow.db'}"


def experiment_name(root: Path) -> str:
    """One MLflow experiment per project: MLFLOW_EXPERIMENT_NAME, else the project folder's name."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or root.name


def numeric_leaves(flat: dict[str, Any]) -> dict[str, float]:
    """Keep the numbers (not bools) of a flat dict: what MLflow accepts as metrics."""
    return {
        k: float(v)
        for k, v in flat.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


@dataclass
class DataInput:
    """One split the run read, logged as an MLflow dataset input (name, digest, schema, where):
    `mlflow ui` shows it in the runs list's Dataset column and can filter runs by it."""

    name: str  # data.name
    split: str  # train, val or test
    digest: str  # sha256 of the split's images and labels, as meta.json records it
    shape: tuple[int, ...]  # (C, H, W)
    path: Path  # the split's file in the project (a DVC output)
    size: int


def data_inputs(name: str, meta: dict, data_dir: Path) -> list[DataInput]:
    """The splits a data/<name>/meta.json (its content) records, as dataset inputs; none for a
    file without digests, sizes and shape (an older exigo wrote it)."""
    meta = meta if isinstance(meta, dict) else {}
    digests, sizes, shape = meta.get("sha256"), meta.get("sizes"), meta.get("shape")
    if not (isinstance(digests, dict) and isinstance(sizes, dict) and isinstance(shape, list)):
        return []
    return [
        DataInput(name, split, str(digest), tuple(shape), data_dir / f"{split}.pt", sizes[split])
        for split, digest in digests.items()
        if isinstance(sizes.get(split), int)
    ]


@dataclass
class RunContent:
    """Everything one run logs."""

    params: dict[str, Any]
    metrics: dict[str, float]
    history: list[dict[str, float]]  # per-epoch rows, each with an "epoch"
    artifacts: dict[str, Path]  # artifact folder -> file or folder
    model: Any | None = None
    input_example: Any | None = None
    tables: dict[str, Any] = field(default_factory=dict)  # artifact file -> pandas.DataFrame
    code_paths: list[str] = field(default_factory=list)  # a user's model code, logged with it
    datasets: list[DataInput] = field(default_factory=list)  # the splits, as MLflow inputs


@dataclass
class Logged:
    run_id: str
    uri: str
    experiment_id: str
    earlier: bool  # an earlier attempt had already logged this change completely
    tags: dict[str, str]
    registered: Registered | None = None  # the model version this run made


def log_run(
    content: RunContent, root: Path | None = None, cwd: Path | None = None, data_name=None
) -> Logged:
    """Log one complete run, exactly once per change (see the module's docstring)."""
    root = root or project_root()
    cwd = cwd or Path.cwd()
    uri = tracking_uri(root)
    registry_name = model_name(experiment_name(root))  # a bad override stops before any run
    mlflow_client_defaults()
    tags = run_tags(cwd, data_name)
    tags[KEY_TAG] = run_key(
        content.params, content.metrics, content.history, tags, previous_track(cwd)
    )
    import mlflow  # first: importing it sets up its loggers, which held_logs then holds

    with store_lock(uri), held_logs(*STORE_LOGGERS, replay=True), translate(uri):
        ensure_sqlite_store(uri, _artifact_root(uri))
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        experiment_id = _experiment(client, experiment_name(root), uri)
        if done := _complete_run(client, experiment_id, tags[KEY_TAG]):
            return Logged(done.info.run_id, uri, experiment_id, True, done.data.tags)
        tags.update(_restored(client, experiment_id, tags))
        run_id, registered = _log(mlflow, client, experiment_id, tags, content, registry_name)
    return Logged(run_id, uri, experiment_id, False, tags, registered)


def _artifact_root(uri: str) -> str:
    """Artifacts of a local store live beside it (not in the working directory, which is a
    temporary copy for queued experiments)."""
    path = sqlite_path(uri)
    return str(path.parent / "mlruns") if path else "mlflow-artifacts:/"


def _experiment(client, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if path := sqlite_path(uri):
            location = str(path.parent / "mlruns" / safe_name(name))
        try:  # a model-training experiment (MLflow 3.17's UI follows its own switch instead)
            tags = {KIND_TAG: "custom_model_development"}
            return client.create_experiment(name, artifact_location=location, tags=tags)
        except MlflowException as exc:  # another machine created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise exc from None
    if experiment.lifecycle_stage == "deleted":
        raise ExigoError(
            f"MLflow experiment '{name}' (id {experiment.experiment_id}) was deleted on "
            f"{describe(uri)}; restore it (MLFLOW_TRACKING_URI={describe(uri)} mlflow experiments "
            f"restore --experiment-id {experiment.experiment_id}) or set MLFLOW_EXPERIMENT_NAME "
            "to a new name, then run dvc repro again (the DVC outputs are kept)"
        )
    if KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, KIND_TAG, "custom_model_development")
    return experiment.experiment_id


def _complete_run(client, experiment_id: str, key: str):
    """The complete run of this key, if an earlier attempt logged it; cut-off runs of the key
    are deleted (hidden in `mlflow ui`, tagged why) so that the change keeps exactly one run."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'")
    complete = [r for r in runs if r.data.tags.get(COMPLETE_TAG) == "true"]
    for run in runs:
        if run not in complete:
            client.set_tag(run.info.run_id, COMPLETE_TAG, "false: cut off, logged again")
            if run.info.status in ("RUNNING", "SCHEDULED"):
                client.set_terminated(run.info.run_id, "KILLED")
            forget_run(client, run.info.run_id)  # no model version points at a deleted run
            client.delete_run(run.info.run_id)
    return complete[0] if complete else None


def _restored(client, experiment_id: str, tags: dict[str, str]) -> dict[str, str]:
    """`exigo.restored=true` when an earlier complete run already used this very model (same
    DVC md5): DVC restored `train` from its run-cache (perhaps pushed from another machine)
    rather than training again. `exigo.trained_in_run` and `exigo.trained_on` name that run."""
    md5 = tags.get("dvc.md5.model")
    if not md5:
        return {}
    earlier = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`dvc.md5.model` = '{md5}' and tags.`{COMPLETE_TAG}` = 'true'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if not earlier:
        return {RESTORED_TAG: "false"}
    first = earlier[0]
    return {
        RESTORED_TAG: "true",
        "exigo.trained_in_run": first.info.run_id,
        "exigo.trained_on": first.data.tags.get("exigo.host", "unknown"),
    }


def _log(
    mlflow, client, experiment_id: str, tags: dict[str, str], content: RunContent, name: str
) -> tuple[str, Registered | None]:
    registered = None
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=tags.get("dvc.exp_name"), tags=tags
    ) as run:
        run_id = run.info.run_id
        _log_values(client, run_id, int(run.info.start_time), content)
        _log_inputs(mlflow, content.datasets)
        _log_files(mlflow, content)
        if content.model is not None:
            model = _log_model(mlflow, content)
            # After the model, before the run is complete: a cut-off run's versions are deleted
            # with it (see _complete_run), so none points at a deleted run.
            registered = register(client, name, model, tags, content.metrics.get(SCORE))
    client.set_tag(run_id, COMPLETE_TAG, "true")  # last: the run is complete only now
    return run_id, registered


def _log_values(client, run_id: str, now: int, content: RunContent) -> None:
    from mlflow.entities import Metric, Param

    params = [Param(k, "null" if v is None else str(v)) for k, v in content.params.items()]
    values = [Metric(k, v, now, 0) for k, v in content.metrics.items()]
    for row in content.history:  # per-epoch curves, step = epoch
        step = int(row["epoch"])
        values += [Metric(k, v, now, step) for k, v in row.items() if k != "epoch"]
    for i in range(0, len(params), 100):  # MLflow's limits per batch
        client.log_batch(run_id, params=params[i : i + 100])
    for i in range(0, len(values), 1000):
        client.log_batch(run_id, metrics=values[i : i + 1000])


CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}  # MLflow's words


def _log_inputs(mlflow, datasets: list[DataInput]) -> None:
    import numpy as np
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.types import Schema, TensorSpec

    if not datasets:
        return
    inputs = [
        MetaDataset(
            LocalArtifactDatasetSource(str(d.path)),
            name=d.name,
            digest=d.digest[:10],
            schema=Schema(
                [
                    TensorSpec(np.dtype(np.uint8), (d.size, *d.shape), "images"),
                    TensorSpec(np.dtype(np.int64), (d.size,), "labels"),
                ]
            ),
        )
        for d in datasets
    ]
    contexts = [CONTEXTS.get(d.split, d.split) for d in datasets]
    mlflow.log_inputs(inputs, contexts, [None] * len(inputs))


def _log_files(mlflow, content: RunContent) -> None:
    for dest, path in content.artifacts.items():
        if path.is_dir():
            mlflow.log_artifacts(str(path), dest)
        elif path.exists():
            mlflow.log_artifact(str(path), dest)
    for artifact_file, table in content.tables.items():  # shown as tables in `mlflow ui`
        mlflow.log_table(table, artifact_file)


def _log_model(mlflow, content: RunContent):
    import mlflow.pytorch

    return mlflow.pytorch.log_model(
        content.model,
        name="model",
        input_example=content.input_example,
        pip_requirements=[f"torch=={_version('torch')}"],
        code_paths=content.code_paths or None,  # the class's module: the model loads elsewhere
    )


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package).split("+")[0]
