"""exigo for a team, proven on 127.0.0.1: a bare git remote, an S3 DVC remote (moto_server), an
MLflow server (PostgreSQL stores, artifacts proxied to S3, basic auth), and two clones standing for
machines A and B. Run with `pytest -m team` (CI does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import (
    PIPELINE,
    init_repo,
    make_env,
    make_project,
    sh,
    tiny_params,
    write_tiny_idx,
)
from services import free_port, mlflow_server, postgres, s3  # noqa: F401 (fixtures)

pytestmark = pytest.mark.team


@dataclass
class Machine:
    """One clone of the project with its own environment: its MLflow account, no AWS variables
    (DVC's S3 credentials live in its .dvc/config.local; MLflow artifacts go through the server)."""

    path: Path
    env: dict
    said: list[str] = field(default_factory=list)  # everything it printed

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = sh(list(args), self.path, self.env, check)
        self.said += [result.stdout, result.stderr]
        return result

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(shutil.which("dvc"), *args, check=check)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [shutil.which("dvc"), *args],
            cwd=self.path,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, proc: subprocess.Popen) -> tuple[int, str, str]:
        out, err = proc.communicate(timeout=900)
        self.said += [out, err]
        return proc.returncode, out, err


def ran(output: str) -> set[str]:
    return {s for s in PIPELINE if f"Running stage '{s}'" in output}


def one_error_line(stderr: str) -> str:
    """The stage's error: one `error:` line, no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@dataclass
class Team:
    a: Machine
    b: Machine
    server: object
    s3: object
    users: dict  # name -> password
    secrets: list[str]  # must never be printed or logged


def machine(folder: Path, user: tuple[str, str], server_url: str) -> Machine:
    env = make_env(folder)
    for key in [k for k in env if k.startswith("AWS_")] + ["MLFLOW_S3_ENDPOINT_URL"]:
        env.pop(key, None)
    env["MLFLOW_TRACKING_URI"] = server_url
    env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = user
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = user[0]
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = f"{user[0]}@example.com"
    return Machine(folder / "exigo", env)


def credentials(m: Machine, endpoint, remote: str = "store") -> None:
    """The DVC remote's keys go to .dvc/config.local (git-ignored), as a team member does."""
    m.dvc("remote", "modify", "--local", remote, "access_key_id", endpoint.key_id)
    m.dvc("remote", "modify", "--local", remote, "secret_access_key", endpoint.secret)


@pytest.fixture(scope="module")
def team(tmp_path_factory, mlflow_server, s3):  # noqa: F811
    tmp = tmp_path_factory.mktemp("team")
    s3.client().create_bucket(Bucket="dvc-store")
    alice, bob = mlflow_server.add_user("alice"), mlflow_server.add_user("bob")
    a = machine(tmp / "a", alice, mlflow_server.url)
    b = machine(tmp / "b", bob, mlflow_server.url)

    idx = write_tiny_idx(tmp / "idx")  # stands for the data mirror both machines could reach
    data = {"name": "idx", "source": str(idx.folder), "idx": {"sha256": idx.payload_sha256}}
    params = tiny_params(
        data=data,
        train={"epochs": 1, "batch_size": 64, "lr": 0.01, "device": "cpu"},
        embed={"method": "pca", "folds": 2, "n_points": 60},
    )
    make_project(a.path, params)
    init_repo(a.path, a.env)
    a.dvc("remote", "add", "-d", "store", "s3://dvc-store/exigo")
    a.dvc("remote", "modify", "store", "endpointurl", s3.url)
    credentials(a, s3)
    origin = tmp / "origin.git"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp, a.env)
    a.run("git", "remote", "add", "origin", str(origin))
    a.run("git", "add", "-A")
    a.run("git", "commit", "-qm", "shared DVC remote")
    a.run("git", "push", "-q", "origin", "main")
    b.path.parent.mkdir(parents=True)
    sh(["git", "clone", "-q", str(origin), str(b.path)], tmp, b.env)
    credentials(b, s3)
    return Team(a, b, mlflow_server, s3, dict([alice, bob]), [s3.secret, alice[1], bob[1]])


def server_runs(team: Team):
    import mlflow

    client = mlflow.MlflowClient(team.server.url)
    (experiment,) = [e for e in client.search_experiments() if e.name == "exigo"]
    return client, client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC"]
    )


@pytest.fixture
def as_alice(team, monkeypatch):
    """This test process as a client on A: alice's MLflow account, and no bucket credentials."""
    for key in [k for k in os.environ if k.startswith("AWS_")] + ["MLFLOW_S3_ENDPOINT_URL"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", team.users["alice"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.server.url)
    return team


def test_two_machines_share_data_run_cache_experiments_and_runs(as_alice):
    team = as_alice
    a, b = team.a, team.b

    # A runs the pipeline, commits the results, and shares them.
    out = a.dvc("repro").stdout
    assert ran(out) == set(PIPELINE)
    link = f"{team.server.url}/#/experiments/"  # track's own link, once; not MLflow's "View run"
    assert out.count(link) == 1 and "View run" not in out and "View experiment" not in out, out
    a.run("git", "add", "dvc.lock", "metrics", "plots")
    a.run("git", "commit", "-qm", "baseline")
    a.run("git", "push", "-q", "origin", "main")
    a.run(shutil.which("exigo"), "push")

    # 1. B, a fresh clone: dvc pull restores everything, and dvc repro runs no stage.
    b.run("git", "pull", "-q", "origin", "main")
    b.dvc("pull")
    out = b.dvc("repro").stdout
    assert ran(out) == set(), out
    assert b.dvc("status", "--json").stdout.strip() in ("{}", "")
    assert (b.path / "models/model.pt").read_bytes() == (a.path / "models/model.pt").read_bytes()
    # tensorboard --logdir logs shows A's projector there
    assert (b.path / "logs/test_embeddings/projector_config.pbtxt").exists()
    assert (b.path / ".exigo/vega.js").exists()  # dvc plots show works offline there too

    # 6. The MLflow server is down while both machines finish an experiment: the DVC outputs
    # are kept, each says so in one line, and nothing is logged.
    team.server.stop()
    try:
        running = [
            (a, a.start("exp", "run", "-n", "lr-a", "-S", "train.lr=0.02")),
            (b, b.start("exp", "run", "-n", "lr-low", "-S", "train.lr=0.005")),
        ]
        for m, proc in running:
            code, out, err = m.finish(proc)
            assert code != 0
            assert {"train", "evaluate", "track"} <= ran(out)
            line = one_error_line(err)
            assert f"MLflow server {team.server.url} unreachable" in line, line
            assert (m.path / "models/model.pt").exists()
    finally:
        team.server.start()
    _, runs = server_runs(team)
    assert len(runs) == 1  # A's baseline only

    # Back up: the same commands log each experiment once, both at the same moment.
    running = [
        (a, a.start("exp", "run", "-n", "lr-a", "-S", "train.lr=0.02")),
        (b, b.start("exp", "run", "-n", "lr-low", "-S", "train.lr=0.005")),
    ]
    for m, proc in running:
        code, out, err = m.finish(proc)
        assert code == 0, err
        assert ran(out) == {"track"}, out  # the outputs were kept: nothing trains again
    client, runs = server_runs(team)
    names = [r.data.tags.get("dvc.exp_name") for r in runs]
    assert sorted(names[1:]) == ["lr-a", "lr-low"] and names[0] is None
    by_name = {r.data.tags.get("dvc.exp_name"): r for r in runs}

    # 3. Experiments across machines: both push; A pulls B's and compares it with its own.
    a.dvc("exp", "push", "origin", "lr-a")
    a.run(shutil.which("exigo"), "push")  # the run-cache's outputs too
    b.dvc("exp", "push", "origin", "lr-low")
    b_png = (b.path / "plots/evaluate/images/confusion.png").read_bytes()  # B's lr-low image
    a.dvc("exp", "pull", "origin", "lr-low")
    shown = json.loads(a.dvc("exp", "show", "--json").stdout)
    exps = {e.get("name") for base in shown for e in (base.get("experiments") or [])}
    assert {"lr-a", "lr-low"} <= exps
    diff = json.loads(a.dvc("metrics", "diff", "HEAD", "lr-low", "--json").stdout)
    assert "accuracy" in diff["metrics/evaluate.json"]
    plots = json.loads(a.dvc("plots", "diff", "HEAD", "lr-low", "--json").stdout)["data"]
    confusion = plots["plots/evaluate/images/confusion.png"]
    assert sorted(r for e in confusion for r in e["revisions"]) == ["HEAD", "lr-low"]
    a.run(shutil.which("exigo"), "compare", "HEAD", "lr-low", "-o", "compare")
    image = a.path / "compare/images/lr-low/plots_evaluate_images_confusion.png"
    assert image.read_bytes() == b_png  # fetched from the DVC remote

    # 2. A shared run-cache: B asks for A's lr-a params and gets A's outputs without training.
    out = b.dvc("exp", "run", "--pull", "-S", "train.lr=0.02").stdout
    assert ran(out) == {"params", "track"}, out  # the params check always runs (persist)
    for stage in ("train", "evaluate", "saliency", "embed"):
        assert f"Stage '{stage}' is cached - skipping run" in out, out
    client, runs = server_runs(team)
    restored = runs[-1]
    assert restored.data.tags["exigo.restored"] == "true"
    assert restored.data.tags["exigo.trained_in_run"] == by_name["lr-a"].info.run_id
    assert restored.data.tags["dvc.md5.model"] == by_name["lr-a"].data.tags["dvc.md5.model"]
    assert restored.data.metrics == by_name["lr-a"].data.metrics
    assert by_name["lr-a"].data.tags["exigo.restored"] == "false"

    # 4, 5. Exactly one complete run per experiment, each with its lineage, no credential in it.
    assert len(runs) == 4
    for run in runs:
        tags = run.data.tags
        assert tags["exigo.complete"] == "true" and run.info.status == "FINISHED"
        assert tags["dvc.remote"] == "s3://dvc-store/exigo"
        assert len(tags["mlflow.source.git.commit"]) == 40 and tags["exigo.host"]
        assert len(tags["dvc.md5.data"]) == 32 + len(".dir") and len(tags["dvc.md5.model"]) == 32
        logged = json.dumps([run.data.params, tags])
        assert not any(secret in logged for secret in team.secrets)
    assert by_name["lr-low"].data.tags["exigo.host"]

    # Artifacts and the model come back through the server, with no bucket credentials here.
    import mlflow
    import torch

    run = by_name["lr-low"]
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="plots/evaluate/images/confusion.png"
    )
    assert Path(local).read_bytes() == b_png
    (model,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        output_format="list",
    )
    net = mlflow.pytorch.load_model(model.model_uri)
    assert net(torch.zeros(1, 1, 28, 28)).shape == (1, 10)

    # Every run's model is a version of the project's registered model on the server, and
    # `best` is the first version with the highest validation accuracy (the restored run ties).
    versions = client.search_model_versions("name = 'exigo'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in runs)
    top = max(float(v.tags["train.val_acc"]) for v in versions)
    first_top = min(int(v.version) for v in versions if float(v.tags["train.val_acc"]) == top)
    assert int(client.get_model_version_by_alias("exigo", "best").version) == first_top
    best = mlflow.pytorch.load_model("models:/exigo@best")
    assert best(torch.zeros(1, 1, 28, 28)).shape == (1, 10)

    for text in a.said + b.said:  # no credential was ever printed
        assert not any(secret in text for secret in team.secrets)


def test_credentials_and_faults_say_one_line_and_log_nothing(as_alice, tmp_path):
    team = as_alice
    a = team.a
    if not (a.path / "dvc.lock").exists():  # run alone: A needs results to log
        a.dvc("repro")
    before = len(server_runs(team)[1])
    track = [sys.executable, "-m", "stages.track"]

    # A client without credentials gets 401 and writes nothing.
    import requests

    answer = requests.post(
        f"{team.server.url}/api/2.0/mlflow/experiments/create", json={"name": "x"}, timeout=30
    )
    assert answer.status_code == 401
    env = {k: v for k, v in a.env.items() if not k.startswith("MLFLOW_TRACKING_U")}
    env["MLFLOW_TRACKING_URI"] = team.server.url
    result = subprocess.run(track, cwd=a.path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "refused the credentials (401 unauthorized)" in one_error_line(result.stderr)

    # A wrong password: the same line, and the password is not in it.
    env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = "alice", "not-" + "x" * 12
    result = subprocess.run(track, cwd=a.path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "not-xxxx" not in result.stderr + result.stdout
    assert "MLFLOW_TRACKING_PASSWORD" in one_error_line(result.stderr)
    assert len(server_runs(team)[1]) == before

    # A DVC remote that cannot be reached, and one that is read-only: one line each, and the
    # local outputs stay.
    a.dvc("remote", "add", "dead", "s3://dvc-store/exigo")
    a.dvc("remote", "modify", "dead", "endpointurl", f"http://127.0.0.1:{free_port()}")
    credentials(a, team.s3, "dead")
    result = a.run(shutil.which("exigo"), "push", "-r", "dead", check=False)
    assert result.returncode == 2
    assert "DVC remote 'dead' (s3://dvc-store/exigo): unreachable" in one_error_line(result.stderr)
    assert (a.path / "models/model.pt").exists()
    if os.geteuid() == 0:  # a shared folder mounted read-only (root can write anything else)
        folder = tmp_path / "ro"
        folder.mkdir()
        sh(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], tmp_path, a.env)
        try:
            a.dvc("remote", "add", "ro", str(folder))
            result = a.run(shutil.which("exigo"), "push", "-r", "ro", check=False)
        finally:
            sh(["umount", str(folder)], tmp_path, a.env)
        assert result.returncode == 2
        assert f"DVC remote 'ro' ({folder}): read-only" in one_error_line(result.stderr)

    # An experiment deleted on the server: one line saying how to restore it.
    import mlflow

    with _admin(team):
        admin = mlflow.MlflowClient(team.server.url)
        experiment = admin.get_experiment_by_name("exigo") or admin.get_experiment(
            admin.create_experiment("exigo")
        )
        admin.delete_experiment(experiment.experiment_id)
    try:
        result = a.run(*track, check=False)
        assert result.returncode == 2
        line = one_error_line(result.stderr)
        assert "MLflow experiment 'exigo'" in line and "was deleted" in line
        assert f"restore --experiment-id {experiment.experiment_id}" in line
    finally:
        with _admin(team):
            mlflow.MlflowClient(team.server.url).restore_experiment(experiment.experiment_id)


def _admin(team: Team):
    from services import _credentials

    return _credentials(*team.server.admin)
