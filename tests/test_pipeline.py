"""End to end: real `dvc repro` and `dvc exp run` in a temporary git repo, data from a local mirror."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import ROOT, make_project, read_files, tiny_params


def sh(args, cwd, env, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def dvc(*args, cwd, env, check=True) -> subprocess.CompletedProcess:
    return sh([shutil.which("dvc"), *args], cwd, env, check)


def mlflow_runs(project) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiments = client.search_experiments()
    assert [e.name for e in experiments if e.name != "Default"] == [project.name]
    return client.search_runs(
        [e.experiment_id for e in experiments], order_by=["attributes.start_time ASC"]
    )


def history(project, run_id, key="val_acc") -> list[int]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    return [m.step for m in client.get_metric_history(run_id, key)]


@pytest.fixture
def repo(tmp_path, tiny_idx, mirror, stage_env):
    """A fresh git + DVC repo holding the project, its data served by a mirror on 127.0.0.1."""
    url = mirror.add("mnist", read_files(tiny_idx.folder))
    data = {"name": "idx", "source": url, "sha256": tiny_idx.payload_sha256}
    project = make_project(tmp_path / "exigo-e2e", tiny_params(data=data))
    env = stage_env
    sh(["git", "init", "-q", "-b", "main"], project, env)
    sh(["git", "config", "user.email", "test@example.com"], project, env)
    sh(["git", "config", "user.name", "test"], project, env)
    dvc("init", "-q", cwd=project, env=env)
    shutil.copy(ROOT / ".dvc" / "config", project / ".dvc" / "config")
    sh(["git", "add", "-A"], project, env)
    sh(["git", "commit", "-qm", "project"], project, env)
    return project, env


def test_repro_experiments_diffs_and_mlflow(repo):
    project, env = repo
    out = dvc("repro", cwd=project, env=env).stdout
    for stage in ("download", "train", "evaluate", "saliency", "track"):
        assert f"Running stage '{stage}'" in out
    for path in (
        "data/idx/train.pt",
        "models/model.pt",
        "models/init.pt",
        "metrics/train.json",
        "metrics/evaluate.json",
        "plots/train/history.csv",
        "plots/evaluate/confusion.csv",
        "plots/evaluate/images/confusion.png",
        "metrics/saliency.json",
        "plots/saliency/deletion.csv",
        "plots/saliency/insertion.csv",
        "plots/saliency/images/gradient.png",
    ):
        assert (project / path).exists(), path
    runs = mlflow_runs(project)
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["train.lr"] == "0.01" and run.data.params["data.name"] == "idx"
    assert "evaluate.accuracy" in run.data.metrics and "train.best_epoch" in run.data.metrics
    assert "saliency.deletion_auc.random" in run.data.metrics
    assert history(project, run.info.run_id) == [1, 2]
    head = sh(["git", "rev-parse", "HEAD"], project, env).stdout.strip()
    assert run.data.tags["mlflow.source.git.commit"] == head

    # A no-op repro runs nothing and logs nothing.
    out = dvc("repro", cwd=project, env=env).stdout
    assert "Running stage" not in out
    assert len(mlflow_runs(project)) == 1

    # Commit the baseline the way a user would, then run an experiment.
    sh(["git", "add", "dvc.lock", "metrics", "plots"], project, env)
    sh(["git", "commit", "-qm", "baseline"], project, env)
    out = dvc("exp", "run", "-S", "train.lr=0.02", "--name", "lr-high", cwd=project, env=env).stdout
    assert "Running stage 'download'" not in out  # a train param does not re-run download
    runs = mlflow_runs(project)
    assert len(runs) == 2
    exp_run = runs[-1]
    assert exp_run.data.tags["dvc.exp_name"] == "lr-high"
    assert exp_run.data.params["train.lr"] == "0.02"

    shown = json.loads(dvc("exp", "show", "--json", cwd=project, env=env).stdout)
    names = [e.get("name") for base in shown for e in (base.get("experiments") or [])]
    assert "lr-high" in names

    diff = json.loads(
        dvc("metrics", "diff", "HEAD", "lr-high", "--all", "--json", cwd=project, env=env).stdout
    )
    accuracy = diff["metrics/evaluate.json"]["accuracy"]
    assert set(accuracy) >= {"old", "new"}
    assert accuracy["new"] == pytest.approx(exp_run.data.metrics["evaluate.accuracy"])

    plots = json.loads(
        dvc("plots", "diff", "HEAD", "lr-high", "--json", cwd=project, env=env).stdout
    )["data"]
    confusion_csv = "plots/evaluate/confusion.csv"
    assert {confusion_csv, "confusion_normalized", "loss", "accuracy"} <= set(plots)
    for name in (confusion_csv, "confusion_normalized", "loss"):
        (entry,) = plots[name]
        assert entry["revisions"] == ["HEAD", "lr-high"]
        assert {row["rev"] for row in entry["content"]["data"]["values"]} == {"HEAD", "lr-high"}
    confusion = plots[confusion_csv][0]["content"]
    assert confusion["facet"]["column"]["field"] == "rev"  # one matrix per experiment
    images = plots["plots/evaluate/images/confusion.png"]
    assert sorted(rev for e in images for rev in e["revisions"]) == ["HEAD", "lr-high"]
    # One line per saliency method (and the random order), per revision.
    (deletion,) = plots["deletion"]
    lines = {(r["rev"], r["field"]) for r in deletion["content"]["data"]["values"]}
    methods = ("gradient", "integrated_gradients", "smoothgrad", "gradcam", "random")
    assert lines == {(rev, m) for rev in ("HEAD", "lr-high") for m in methods}
    assert "plots/saliency/images/gradient.png" in plots

    # Changing a saliency param re-runs saliency (and track), nothing upstream.
    out = dvc(
        "exp", "run", "-S", "saliency.n_eval=20", "--name", "sal", cwd=project, env=env
    ).stdout
    assert "Running stage 'saliency'" in out and "Running stage 'track'" in out
    for stage in ("download", "train", "evaluate"):
        assert f"Running stage '{stage}'" not in out
    diff = json.loads(
        dvc("metrics", "diff", "HEAD", "sal", "--all", "--json", cwd=project, env=env).stdout
    )
    assert set(diff["metrics/saliency.json"]["deletion_auc.random"]) >= {"old", "new"}


def test_restored_from_run_cache_still_logs_one_complete_run(repo):
    project, env = repo
    dvc("repro", cwd=project, env=env)
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("lr: 0.01", "lr: 0.02"))
    dvc("repro", cwd=project, env=env)
    (project / "params.yaml").write_text(params)  # back to the first params: DVC has them cached
    out = dvc("repro", cwd=project, env=env).stdout
    assert "Running stage 'train'" not in out and "Running stage 'evaluate'" not in out
    assert "Running stage 'track'" in out
    runs = mlflow_runs(project)
    assert len(runs) == 3
    first, last = runs[0], runs[-1]
    assert last.data.params == first.data.params
    assert last.data.metrics == first.data.metrics
    assert history(project, last.info.run_id, "train_loss") == [1, 2]


@pytest.mark.slow
def test_temp_experiment_logs_to_the_project_database(repo):
    """`dvc exp run --temp` runs in a copy under .dvc/tmp/exps: its run must land in <repo>/mlflow.db."""
    project, env = repo
    dvc("exp", "run", "--temp", "-S", "train.epochs=1", "--name", "in-temp", cwd=project, env=env)
    runs = mlflow_runs(project)
    assert [r.data.tags.get("dvc.exp_name") for r in runs] == ["in-temp"]
    assert runs[0].data.params["train.epochs"] == "1"
    assert not list((project / ".dvc" / "tmp").rglob("mlflow.db"))
