"""The track stage: one complete MLflow run from the files the other stages wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import STAGES, run_stage

from exigo.live import read_history
from exigo.tracking import experiment_name, project_root, tracking_uri


def test_store_is_anchored_on_dvc_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "proj"))
    assert project_root() == tmp_path / "proj"
    assert tracking_uri(project_root()) == f"sqlite:///{tmp_path / 'proj' / 'mlflow.db'}"
    # A temp/queued experiment's copy lives under .dvc/tmp/exps: anchor on the project itself.
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "proj/.dvc/tmp/exps/tmpab12/"))
    assert project_root() == tmp_path / "proj"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(project_root()) == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "sweeps")
    assert experiment_name(project_root()) == "sweeps"


@pytest.fixture
def tracked(tiny_project, stage_env, monkeypatch):
    for stage in (*STAGES, "track"):
        out = run_stage(stage, tiny_project, stage_env).stdout
    assert "MLflow: logged run" in out
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tiny_project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    (exp,) = [e for e in client.search_experiments() if e.name == tiny_project.name]
    (run,) = client.search_runs([exp.experiment_id])
    return tiny_project, client, run


def test_run_holds_params_metrics_curves_artifacts_and_model(tracked):
    project, client, run = tracked
    assert run.data.params["train.epochs"] == "2" and run.data.params["data.source"]
    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    assert run.data.metrics["evaluate.accuracy"] == pytest.approx(metrics["accuracy"])
    steps = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_acc")]
    history = read_history(project / "metrics/train")
    assert steps == [(row["epoch"], row["val_acc"]) for row in history] and len(steps) == 2

    def listing(path=None):
        return {a.path for a in client.list_artifacts(run.info.run_id, path)}

    assert {"checkpoint", "metrics", "plots"} <= listing()
    assert listing("plots") == {"plots/evaluate", "plots/embed", "plots/saliency"}
    assert "metrics/train/plots" in listing("metrics/train")  # DVCLive's per-epoch history
    assert run.data.metrics["embed.knn_acc_2d"] > 0
    assert "plots/evaluate/images/confusion.png" in listing("plots/evaluate/images")
    assert "plots/saliency/images/gradient.png" in listing("plots/saliency/images")
    saliency = json.loads((project / "metrics/saliency.json").read_text())
    assert run.data.metrics["saliency.random_deletion_auc"] == pytest.approx(
        saliency["random_deletion_auc"]
    )

    import mlflow
    import torch

    (logged,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert logged.source_run_id == run.info.run_id
    model = mlflow.pytorch.load_model(logged.model_uri)
    x = torch.from_numpy(np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32))
    from exigo.models import load_checkpoint

    local, _ = load_checkpoint(project / "models/model.pt")
    with torch.no_grad():
        torch.testing.assert_close(model(x), local(x))
