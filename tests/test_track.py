"""The track stage: one complete MLflow run from the files the other stages wrote."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import STAGES, make_project, mlflow_store, run_stage, tiny_params

from exigo.core.errors import ExigoError, interrupts_always_stop
from exigo.track.lineage import COMPLETE_TAG, KEY_TAG, dvc_hashes, dvc_remote_url, run_tags
from exigo.track.runs import (
    RunContent,
    data_inputs,
    experiment_name,
    log_run,
    project_root,
    tracking_uri,
)


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


@pytest.mark.parametrize("value", ["abc", "-1", "nan"])
def test_a_bad_lock_timeout_is_one_line_before_anything_is_read(tmp_path, stage_env, value):
    project = make_project(tmp_path / "proj", tiny_params(), code=False)
    result = run_stage("track", project, {**stage_env, "EXIGO_MLFLOW_LOCK_TIMEOUT": value}, False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        "error: EXIGO_MLFLOW_LOCK_TIMEOUT: seconds the track stage waits for another process "
        f"logging to the same MLflow store: a number, 0 or more (unset: 600) (got {value!r})"
    ]
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml"]  # no store was made


@pytest.fixture
def tracked(tiny_project, stage_env, monkeypatch):
    for stage in (*STAGES, "track"):
        out = run_stage(stage, tiny_project, stage_env).stdout
    assert "MLflow: logged run" in out
    import mlflow

    with mlflow_store(f"sqlite:///{tiny_project / 'mlflow.db'}"):
        client = mlflow.MlflowClient()
        (exp,) = [e for e in client.search_experiments() if e.name == tiny_project.name]
        (run,) = client.search_runs([exp.experiment_id])
        yield tiny_project, client, run


@pytest.mark.slow  # the whole pipeline once more; the in-process test below covers the rules
def test_each_tracked_run_is_a_version_and_best_loads_the_best_validation_model(tracked, stage_env):
    """Two runs: the second is worse on validation, so `models:/proj@best` stays the first
    run's model, and predicts exactly as its checkpoint does."""
    import mlflow
    import torch

    from exigo.models.checkpoint import load_checkpoint

    project, client, first = tracked
    first_model = project.parent / "first_model.pt"
    first_model.write_bytes((project / "models/model.pt").read_bytes())
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("lr: 0.01", "lr: 1.0e-05"))
    run_stage("train", project, stage_env)
    out = run_stage("track", project, stage_env)
    second = client.get_run(client.search_runs([first.info.experiment_id])[0].info.run_id)
    assert second.info.run_id != first.info.run_id
    assert second.data.metrics["train.val_acc"] < first.data.metrics["train.val_acc"]

    versions = {v.run_id: v for v in client.search_model_versions("name = 'proj'")}
    assert [int(versions[r.info.run_id].version) for r in (first, second)] == [1, 2]
    assert float(versions[second.info.run_id].tags["train.val_acc"]) == pytest.approx(
        second.data.metrics["train.val_acc"]
    )
    assert int(client.get_model_version_by_alias("proj", "best").version) == 1
    val_acc = second.data.metrics["train.val_acc"]
    assert (
        f"MLflow: registered model 'proj' version 2 (train.val_acc {val_acc:.4f}); "
        "@best stays version 1"
    ) in out.stdout
    assert "Traceback" not in out.stderr and "Created version" not in out.stderr
    exp_id = first.info.experiment_id
    link = f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs/{second.info.run_id}"
    assert f"{link}?workflowType=machine_learning" in out.stdout  # opens in model-training mode

    best = mlflow.pytorch.load_model("models:/proj@best")
    local, _ = load_checkpoint(first_model)
    latest, _ = load_checkpoint(project / "models/model.pt")
    x = torch.from_numpy(np.random.default_rng(1).random((5, 1, 28, 28), dtype=np.float32))
    with torch.no_grad():
        torch.testing.assert_close(best(x), local(x))
        assert not torch.allclose(best(x), latest(x))  # it is not simply the latest model


# --- exactly once, lineage, and the store's faults (in process: one MLflow import) ---------------


def content(lr: float = 0.01) -> RunContent:
    history = [{"epoch": 1.0, "val_acc": 0.5}, {"epoch": 2.0, "val_acc": 0.6}]
    return RunContent({"train.lr": lr}, {"evaluate.accuracy": 0.9}, history, {})


@pytest.fixture
def local_store(tmp_path, monkeypatch):
    """A project folder whose MLflow store is its own mlflow.db."""
    project = tmp_path / "proj"
    project.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # unset for the code, restored afterwards
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "proj")
    return project  # log_run sets MLflow's URI: conftest unsets it after the test


def all_runs(project, deleted: bool = False):
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (exp,) = [e for e in client.search_experiments() if e.name == "proj"]
    view = ViewType.ALL if deleted else ViewType.ACTIVE_ONLY
    return client.search_runs([exp.experiment_id], run_view_type=view)


def test_the_splits_meta_json_records_are_the_runs_dataset_inputs(local_store):
    """One MLflow dataset input per split, by the digest meta.json records; an older meta.json
    without digests logs none rather than failing the run."""
    data_dir = local_store / "data/x"
    assert data_inputs("x", {"dataset": "x", "classes": ["a", "b"]}, data_dir) == []
    digests = {s: f"{i}" * 64 for i, s in enumerate(("train", "val", "test"))}
    sizes = {"train": 5, "val": 2, "test": 3}
    meta = {"sha256": digests, "sizes": sizes, "shape": [3, 8, 10]}
    logged = content()
    logged.datasets = data_inputs("x", meta, data_dir)
    run_id = log_run(logged, root=local_store, cwd=local_store).run_id
    (run,) = [r for r in all_runs(local_store) if r.info.run_id == run_id]
    got = {d.tags[0].value: d.dataset for d in run.inputs.dataset_inputs}
    assert {c: (d.name, d.digest) for c, d in got.items()} == {
        "training": ("x", "0" * 10),
        "validation": ("x", "1" * 10),
        "testing": ("x", "2" * 10),
    }
    spec = json.loads(got["testing"].schema)["mlflow_colspec"][0]["tensor-spec"]
    assert spec["shape"] == [3, 3, 8, 10]
    assert json.loads(got["testing"].source)["uri"] == str(data_dir / "test.pt")


def test_a_change_is_logged_once_and_a_cut_off_run_is_replaced(local_store):
    first = log_run(content(), root=local_store, cwd=local_store)
    again = log_run(content(), root=local_store, cwd=local_store)  # a retry of the same change
    assert again.earlier and again.run_id == first.run_id
    (run,) = all_runs(local_store)
    assert run.data.tags[COMPLETE_TAG] == "true" and run.data.tags[KEY_TAG]

    # A run of another change, cut off (kill -9) after it started: RUNNING, never completed.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{local_store / 'mlflow.db'}")
    other = log_run(content(0.02), root=local_store, cwd=local_store)
    client.set_tag(other.run_id, COMPLETE_TAG, "false")
    client.update_run(other.run_id, status="RUNNING")
    redone = log_run(content(0.02), root=local_store, cwd=local_store)
    assert not redone.earlier and redone.run_id != other.run_id
    active = all_runs(local_store)
    assert sorted(r.info.run_id for r in active) == sorted([first.run_id, redone.run_id])
    assert all(r.data.tags[COMPLETE_TAG] == "true" for r in active)
    hidden = {r.info.run_id: r for r in all_runs(local_store, deleted=True)}[other.run_id]
    assert hidden.info.lifecycle_stage == "deleted" and hidden.info.status == "KILLED"


def with_model(lr: float, val_acc: float, test_acc: float) -> RunContent:
    import torch

    metrics = {"train.val_acc": val_acc, "evaluate.accuracy": test_acc}
    example = np.zeros((2, 2), dtype=np.float32)  # MLflow's pt2 format traces the model with it
    return RunContent({"train.lr": lr}, metrics, [], {}, torch.nn.Linear(2, 2), example)


def test_best_is_the_highest_validation_accuracy_and_cut_off_versions_go(local_store, monkeypatch):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{local_store / 'mlflow.db'}")

    def log(content):
        logged = log_run(content, root=local_store, cwd=local_store)
        best = client.get_model_version_by_alias("proj", "best")
        assert logged.earlier or logged.registered.best == str(best.version)
        return logged, str(best.version)

    assert log(with_model(0.1, 0.5, 0.9))[1] == "1"
    assert log(with_model(0.2, 0.7, 0.1))[1] == "2"  # higher validation accuracy, worse test
    assert log(with_model(0.3, 0.7, 0.99))[1] == "2"  # a tie keeps the earlier; test never counts
    logged, best = log(with_model(0.4, 0.6, 0.9))
    assert best == "2" and logged.registered.version == "4"
    again, best = log(with_model(0.4, 0.6, 0.9))  # already logged: no new version
    assert again.earlier and again.registered is None and best == "2"

    # Cut off after registering (and taking @best): the re-log deletes the run and its version.
    cut, best = log(with_model(0.5, 0.9, 0.9))
    assert best == "5"
    client.set_tag(cut.run_id, COMPLETE_TAG, "false")
    redone, best = log(with_model(0.5, 0.9, 0.9))
    assert redone.registered.version == "6" and best == "6"
    versions = client.search_model_versions("name = 'proj'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3, 4, 6]
    assert {v.run_id for v in versions} == {r.info.run_id for r in all_runs(local_store)}

    # The version holding @best deleted by hand: the next registration looks at all versions.
    client.delete_model_version("proj", "6")
    logged, best = log(with_model(0.6, 0.65, 0.9))
    assert logged.registered.version == "7" and best == "2"
    tags = client.get_model_version("proj", "2").tags
    assert tags["train.val_acc"] == "0.7"

    monkeypatch.setenv("EXIGO_REGISTERED_MODEL", "digits-cnn")  # the override names the model
    logged = log_run(with_model(0.7, 0.1, 0.1), root=local_store, cwd=local_store)
    assert (logged.registered.name, logged.registered.version) == ("digits-cnn", "1")
    assert int(client.get_model_version_by_alias("digits-cnn", "best").version) == 1
    monkeypatch.setenv("EXIGO_REGISTERED_MODEL", "team/digits")
    with pytest.raises(
        ExigoError, match=r"^EXIGO_REGISTERED_MODEL: .*letters, digits, .* \(got 'team/digits'\)$"
    ):
        log_run(with_model(0.8, 0.1, 0.1), root=local_store, cwd=local_store)
    assert len(all_runs(local_store, deleted=True)) == 8  # nothing was logged for it


def test_lineage_tags_and_sweep_tags(tmp_path, monkeypatch):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc/config").write_text(
        "[core]\n    remote = store\n"
        "['remote \"store\"']\n    url = https://user:s3cr3t@dvc.example.org/exigo\n"
    )
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n"
        "  download:\n    outs:\n    - path: data/idx\n      md5: aaa.dir\n"
        "  train:\n    outs:\n    - path: models/model.pt\n      md5: bbb\n"
        "    - path: models/init.pt\n      md5: ccc\n"
    )
    assert dvc_remote_url(tmp_path) == "https://dvc.example.org/exigo"
    assert dvc_hashes(tmp_path, "idx") == {
        "dvc.md5.data": "aaa.dir",
        "dvc.md5.model": "bbb",
        "dvc.md5.init": "ccc",
    }
    monkeypatch.setenv("EXIGO_SWEEP_STUDY", "lr-search")
    monkeypatch.setenv("EXIGO_SWEEP_TRIAL", "3")
    tags = run_tags(tmp_path, "idx")
    assert tags["optuna.study"] == "lr-search" and tags["optuna.trial"] == "3"
    assert tags["dvc.remote"] == "https://dvc.example.org/exigo" and tags["exigo.host"]
    assert "s3cr3t" not in json.dumps(tags)
    monkeypatch.delenv("EXIGO_SWEEP_STUDY")
    monkeypatch.delenv("EXIGO_SWEEP_TRIAL")
    assert "optuna.study" not in run_tags(tmp_path, "idx")


def test_corrupt_and_half_made_stores_say_what_to_do(local_store):
    db = local_store / "mlflow.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ExigoError, match=r"not a readable SQLite database \(corrupt\); move it"):
        log_run(content(), root=local_store, cwd=local_store)
    assert db.read_bytes() == b"this is not a database" * 100  # left as it was

    db = local_store / "half.db"  # a creation cut off by a full disk, as MLflow alone leaves it
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"  # (local_store restores it)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE secrets (id INTEGER)")
    with pytest.raises(ExigoError, match=r"incomplete, its creation was cut off .*mv "):
        log_run(content(), root=local_store, cwd=local_store)


def test_server_that_is_not_mlflow_and_server_down(local_store, monkeypatch):
    import socket

    server = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)  # serves files: 404
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        with pytest.raises(ExigoError, match=f"MLFLOW_TRACKING_URI={url} is not an MLflow"):
            log_run(content(), root=local_store, cwd=local_store)
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:pw@127.0.0.1:{port}")
    with pytest.raises(ExigoError) as err:
        log_run(content(), root=local_store, cwd=local_store)
    assert f"MLflow server http://127.0.0.1:{port} unreachable (connection refused)" in str(err)
    assert "pw@" not in str(err.value)


def test_waiting_for_the_store_lock_says_so_and_gives_up(local_store, monkeypatch, capfd):
    lock = local_store / "mlflow.db.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from filelock import FileLock; l = FileLock(sys.argv[1]); "
         "l.acquire(); print('held', flush=True); time.sleep(120)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("EXIGO_MLFLOW_LOCK_TIMEOUT", "1")
        with pytest.raises(ExigoError, match=r"gave up after 1 s waiting for .*mlflow.db.lock"):
            log_run(content(), root=local_store, cwd=local_store)
        assert "another process is logging to" in capfd.readouterr().err
    finally:
        holder.kill()
        holder.wait(10)
    assert not (local_store / "mlflow.db").exists()


def test_an_interrupt_swallowed_by_a_finalizer_still_stops(monkeypatch):
    class Finalizer:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # lands here: Python prints "Exception ignored"
            time.sleep(0.2)

    # Python hands the swallowed interrupt to sys.unraisablehook: keep it here (it is the point
    # of the test), instead of pytest's hook printing it as a warning with a traceback.
    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: swallowed.append(info.exc_type))
    with pytest.raises(KeyboardInterrupt), interrupts_always_stop():
        finalizer = Finalizer()
        del finalizer
    assert swallowed == [KeyboardInterrupt]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- a small disk (tmpfs): full while creating the store, full while logging, read-only -----------


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size mounted on tmp_path/disk (needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = []

    def mount(options: str) -> Path:
        verb = ["-o", f"remount,{options}"] if mounted else ["-o", options]
        subprocess.run(["mount", "-t", "tmpfs", *verb, "tmpfs", str(disk)], check=True, timeout=30)
        mounted.append(options)
        return disk

    yield mount
    if mounted:  # lazy: this process's MLflow may still hold the store open
        subprocess.run(["umount", "-l", str(disk)], check=True, timeout=30)


def test_full_disk_at_creation_and_while_logging(small_disk, local_store, monkeypatch):
    disk = small_disk("size=48k")
    uri = f"sqlite:///{disk / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(ExigoError, match="no space left on device; free some space"):
        log_run(content(), root=local_store, cwd=local_store)
    assert list(disk.iterdir()) in ([], [disk / "mlflow.db.lock"])  # no half-made store

    small_disk("size=8m")  # space freed: the store is made, the run logged
    first = log_run(content(), root=local_store, cwd=local_store)
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    filler.write_bytes(b"\0" * (free - 4096))
    artifact = local_store / "big.bin"
    artifact.write_bytes(os.urandom(64 * 1024))
    big = RunContent({"train.lr": 0.5}, {"evaluate.accuracy": 0.1}, [], {"big": artifact})
    with pytest.raises(ExigoError, match="no space left on device"):
        log_run(big, root=local_store, cwd=local_store)
    filler.unlink()
    import mlflow

    client = mlflow.MlflowClient(uri)
    assert client.get_run(first.run_id).data.params == {"train.lr": "0.01"}  # untouched


def test_read_only_store(tmp_path, local_store, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("root writes through permissions; a read-only bind mount needs root (CI has)")
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{rw / 'mlflow.db'}")
    first = log_run(content(), root=local_store, cwd=local_store)
    subprocess.run(["mount", "--bind", str(rw), str(ro)], check=True, timeout=30)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True, timeout=30)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ro / 'mlflow.db'}")
        with pytest.raises(ExigoError, match=r"mlflow.db: read-only .*chmod u\+w"):
            log_run(content(0.3), root=local_store, cwd=local_store)
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=True, timeout=30)
    import mlflow

    runs = mlflow.MlflowClient(f"sqlite:///{rw / 'mlflow.db'}").search_runs([first.experiment_id])
    assert [r.info.run_id for r in runs] == [first.run_id]  # earlier runs untouched


@pytest.mark.slow
def test_ctrl_c_or_kill_while_logging_then_one_complete_run(tracked, stage_env):
    """A Ctrl-C stops with "interrupted" and 130; after it or a kill -9, the next `track` leaves
    the change with exactly one complete run (the cut-off one deleted)."""
    project, client, first = tracked
    params = (project / "params.yaml").read_text()
    for n_mistakes, sig in ((7, signal.SIGINT), (6, signal.SIGKILL)):
        (project / "params.yaml").write_text(
            params.replace("n_mistakes: 8", f"n_mistakes: {n_mistakes}")
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "stages.track"],
            cwd=project, env=stage_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while not client.search_runs([first.info.experiment_id], "attributes.status = 'RUNNING'"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
            assert "Exception ignored" not in err and "Traceback" not in err
        assert "MLflow: logged run" not in out
        run_stage("track", project, stage_env)
        runs = client.search_runs(
            [first.info.experiment_id], f"params.`evaluate.n_mistakes` = '{n_mistakes}'"
        )
        assert len(runs) == 1, [(r.info.status, r.data.tags) for r in runs]
        assert runs[0].data.tags["exigo.complete"] == "true"
        assert runs[0].info.status == "FINISHED"
