"""Bad input to the services exigo talks to (MLflow's store, Optuna's storage, a DVC remote, the
compare report's folder): one line that names what and why, exit 2, no traceback and no other
tool's log lines before it, nothing half-written and no orphan MLflow run.

Each case runs the real thing: an `mlflow.db` on a read-only bind mount, a folder where the store
should be, a tiny HTTP server on 127.0.0.1 that answers 500, a read-only tmpfs (mounted in a
private mount namespace, `unshare --mount --map-root-user`), real `dvc`, and (`-m team`) the
PostgreSQL of tests/services.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import STAGES, dvc, init_repo, make_env, make_project, run_stage, sh, tiny_params
from services import free_port, postgres  # noqa: F401 (fixture)
from test_track import content, local_store  # noqa: F401 (fixture)

from exigo.core.errors import ExigoError
from exigo.track.runs import log_run, tracking_uri

RETRY = "then run dvc repro again (the DVC outputs are kept; the run is logged then, once)"


def one_line(result: subprocess.CompletedProcess) -> str:
    """The command's only stderr line: exit 2, no traceback, nothing before it."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def exigo(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "exigo.cli", *args], cwd, env, check=False)


def unshared(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """`script` in a private mount namespace: what it mounts is seen by nothing else, and gone
    when it exits."""
    return sh(["unshare", "--mount", "--map-root-user", "sh", "-c", script], cwd, env, check=False)


@pytest.fixture
def answers_500():
    """A tiny HTTP server on 127.0.0.1 that answers every request with 500."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def answer(self) -> None:
            body = b"Internal Server Error"
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- the MLflow store, in this process ----------------------------------------------------------


def test_an_unsupported_tracking_uri_scheme_is_one_line(local_store, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://user:secret@bar")
    with pytest.raises(ExigoError) as err:
        tracking_uri(local_store)
    line = str(err.value)
    assert line.startswith(
        "MLFLOW_TRACKING_URI=foo://bar: MLflow has no store for the scheme 'foo' (it supports "
    ), line
    assert "http://" in line and "sqlite://" in line and "postgresql://" in line
    assert "secret" not in line and "\n" not in line
    assert not (local_store / "mlflow.db").exists()


def test_a_folder_where_the_store_should_be_is_one_line_at_once(local_store, capfd):  # noqa: F811
    (local_store / "mlflow.db").mkdir()
    start = time.monotonic()
    with pytest.raises(ExigoError) as err:
        log_run(content(), root=local_store, cwd=local_store)
    assert time.monotonic() - start < 10  # not SQLAlchemy's 100 s of retries
    db = local_store / "mlflow.db"
    assert str(err.value) == (
        f"MLflow store {db}: a folder, not an SQLite file; move it aside (mv {db} {db}.moved) "
        f"so that a new store is created, {RETRY}"
    )
    assert capfd.readouterr().err == ""  # no retry lines


def test_a_read_only_store_is_one_line_with_no_mlflow_log_before_it(tmp_path, local_store, capfd):  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("root writes through permissions; a read-only bind mount needs root (CI has)")
    from exigo.track.store import ensure_sqlite_store

    db = tmp_path / "store" / "mlflow.db"  # the file read-only, its folder (the lock's) not
    ensure_sqlite_store(f"sqlite:///{db}", str(db.parent / "mlruns"))  # empty, as a new one is
    capfd.readouterr()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"  # (local_store restores it)
    subprocess.run(["mount", "--bind", str(db), str(db)], check=True, timeout=30)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(db)], check=True, timeout=30)
        with pytest.raises(ExigoError, match=r"mlflow.db: read-only \(attempt to write a readonly"):
            log_run(content(), root=local_store, cwd=local_store)
    finally:
        subprocess.run(["umount", "-l", str(db)], check=True, timeout=30)
    err = capfd.readouterr().err
    assert "mlflow.store" not in err and "Traceback" not in err and "sqlite3" not in err, err


def test_a_server_answering_500_says_so(local_store, answers_500, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MLFLOW_TRACKING_URI", answers_500)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # the retry path, in a second
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    with pytest.raises(ExigoError) as err:
        log_run(content(), root=local_store, cwd=local_store)
    assert str(err.value) == (
        f"MLflow server {answers_500} answered HTTP 500 (an error on the server); check its log, "
        f"{RETRY}"
    )


# --- the MLflow store, through the track stage --------------------------------------------------


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_idx) -> tuple[Path, dict]:
    """A project after the real pipeline, its run logged: `track` can run again at once."""
    tmp = tmp_path_factory.mktemp("track-faults")
    env = make_env(tmp)
    data = {
        "name": "idx",
        "source": str(tiny_idx.folder),
        "idx": {"sha256": tiny_idx.payload_sha256},
    }
    project = make_project(tmp / "proj", tiny_params(data=data), code=False)
    for stage in ("download", *STAGES, "track"):
        run_stage(stage, project, env)
    return project, env


def track(project: Path, env: dict, **extra: str) -> subprocess.CompletedProcess:
    return run_stage("track", project, {**env, **extra}, check=False)


@pytest.mark.slow
def test_store_faults_through_the_track_stage(tracked, tmp_path, answers_500):
    """What a user sees: one line, at once, for a scheme MLflow has no store for, a folder where
    the store should be, and a server that answers 500 (MLflow's own retries included)."""
    project, env = tracked
    line = one_line(track(project, env, MLFLOW_TRACKING_URI="foo://bar"))
    assert line.startswith("error: MLFLOW_TRACKING_URI=foo://bar: MLflow has no store for the")

    folder = tmp_path / "mlflow.db"
    folder.mkdir()
    line = one_line(track(project, env, MLFLOW_TRACKING_URI=f"sqlite:///{folder}"))
    assert line.startswith(f"error: MLflow store {folder}: a folder, not an SQLite file;"), line

    line = one_line(track(project, env, MLFLOW_TRACKING_URI=answers_500))
    assert line.startswith(f"error: MLflow server {answers_500} answered HTTP 500"), line


@pytest.mark.slow
def test_a_read_only_store_through_the_track_stage(tracked, tmp_path):
    project, env = tracked
    from exigo.track.store import ensure_sqlite_store

    store = tmp_path / "store"
    ensure_sqlite_store(f"sqlite:///{store / 'mlflow.db'}", str(store / "mlruns"))
    script = (
        f'mount --bind "{store}/mlflow.db" "{store}/mlflow.db" && '
        f'mount -o remount,bind,ro "{store}/mlflow.db" && "{sys.executable}" -m stages.track'
    )
    env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
    line = one_line(unshared(script, project, env))
    assert line.startswith(f"error: MLflow store {store / 'mlflow.db'}: read-only"), line


@pytest.mark.slow
def test_ctrl_c_just_after_the_run_is_logged(tracked, tmp_path):
    """A Ctrl-C at any moment after the run is complete: `interrupted` and 130 while the process
    is there, or nothing to interrupt; never killed without a line. The run stays complete."""
    import mlflow

    project, env = tracked
    for delay in (0.0, 0.3, 1.0):  # Python's own exit took ~4 s, without a Ctrl-C handler
        uri = f"sqlite:///{tmp_path / f'store-{delay}' / 'mlflow.db'}"  # a change not logged there
        proc = subprocess.Popen(
            [sys.executable, "-m", "stages.track"],
            cwd=project, env={**env, "MLFLOW_TRACKING_URI": uri}, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        client = None
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if client is None and Path(uri.removeprefix("sqlite:///")).exists():
                client = mlflow.MlflowClient(uri)
            runs = client.search_runs(["1"], "tags.`exigo.complete` = 'true'") if client else []
            if runs:
                break
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 130), (delay, proc.returncode, err)
        assert "Traceback" not in err and "Exception ignored" not in err, err
        if proc.returncode == 130:
            assert err.strip().splitlines()[-1] == "interrupted", err
        (run,) = mlflow.MlflowClient(uri).search_runs(["1"])
        assert run.data.tags["exigo.complete"] == "true" and run.info.status == "FINISHED"


# --- sweeps ---------------------------------------------------------------------------------------


def test_a_sweep_file_outside_the_project(tmp_path):
    from exigo.sweep.workspace import Project

    env = make_env(tmp_path)
    project = init_repo(make_project(tmp_path / "p", tiny_params()), env)
    elsewhere = tmp_path / "else" / "where.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text("study: elsewhere\n")
    assert Project.here(project, sweep_file=elsewhere).head


@pytest.mark.slow
def test_exigo_sweep_runs_a_sweep_file_from_anywhere(tmp_path, tiny_idx):
    env = make_env(tmp_path)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = {
        "name": "idx",
        "source": str(tiny_idx.folder),
        "idx": {"sha256": tiny_idx.payload_sha256},
    }
    train = {"epochs": 1, "batch_size": 32, "lr": 0.01, "device": "cpu"}
    saliency = {"methods": ["gradient"], "n_eval": 20, "n_randomization": 4, "n_pairs": 1}
    params = tiny_params(data=data, train=train, embed={"method": "pca"}, saliency=saliency)
    project = init_repo(make_project(tmp_path / "exigo-anywhere", params), env)
    sweep = tmp_path / "some" / "where" / "else.yaml"
    sweep.parent.mkdir(parents=True)
    space = {"train.lr": {"type": "float", "low": 0.005, "high": 0.05, "log": True}}
    sweep.write_text(yaml.safe_dump({"study": "anywhere", "trials": 1, "space": space}))
    result = exigo("sweep", str(sweep), cwd=project, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "study anywhere: 1 complete, 0 pruned, 0 failed" in result.stdout, result.stdout


def test_a_bad_tracking_uri_stops_a_sweep_before_any_trial(tmp_path):
    env = make_env(tmp_path)
    project = init_repo(make_project(tmp_path / "p", tiny_params()), env)
    sweep = tmp_path / "sweep.yaml"
    space = {"train.lr": {"type": "float", "low": 0.005, "high": 0.05}}
    sweep.write_text(yaml.safe_dump({"study": "s", "trials": 1, "space": space}))
    result = exigo("sweep", str(sweep), cwd=project, env={**env, "MLFLOW_TRACKING_URI": "foo://b"})
    assert "error: MLFLOW_TRACKING_URI=foo://b: MLflow has no store for" in one_line(result)
    assert not (project / "optuna.db").exists()  # no study, no trial


@pytest.mark.team
def test_a_plain_postgresql_storage_url_works_and_hides_its_password(postgres):  # noqa: F811
    """The README's `--storage postgresql://user:pw@host/db`: no driver named, and only psycopg2
    installed (SQLAlchemy 2.1 would take psycopg 3)."""
    from exigo.sweep import study as studies
    from exigo.sweep.config import SweepConfig, SweepError

    url = postgres.create_database("optuna_plain").replace(
        "postgresql+psycopg2://", "postgresql://"
    )
    assert url.startswith("postgresql://exigo:")
    space = {"train.lr": {"type": "float", "low": 0.001, "high": 0.1}}
    cfg = SweepConfig.model_validate({"study": "plain", "trials": 2, "space": space})
    study = studies.open_study(cfg, url)
    assert len(study.get_trials()) == 2  # the slots, in PostgreSQL

    wrong = url.replace(postgres.password, "wrong-" + "x" * 12)
    with pytest.raises(SweepError) as err:
        studies.open_study(cfg, wrong)
    assert "password authentication failed" in str(err.value)
    assert "x" * 12 not in str(err.value) and postgres.password not in str(err.value)


# --- exigo compare -o -----------------------------------------------------------------------------


def test_compare_into_an_existing_file_is_one_line_and_keeps_it(tmp_path, stage_env):
    (tmp_path / "report.txt").write_text("mine")
    line = one_line(exigo("compare", "-o", "report.txt", cwd=tmp_path, env=stage_env))
    assert line == (
        "error: -o report.txt: a file, not a folder; give -o a folder (created, or replaced by "
        "the new report) or move the file away (nothing was written)"
    )
    assert (tmp_path / "report.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]


def test_compare_onto_a_read_only_disk_is_one_line_and_keeps_the_old_report(tmp_path, stage_env):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        f'mount -t tmpfs -o size=1m tmpfs "{disk}" && mkdir "{disk}/compare" && '
        f'echo old > "{disk}/compare/report.md" && mount -o remount,ro "{disk}" && '
        f'"{sys.executable}" -m exigo.cli compare -o "{disk}/compare"; rc=$?; '
        f'echo "left: $(ls -A "{disk}") $(cat "{disk}/compare/report.md")" >&2; exit $rc'
    )
    result = unshared(script, tmp_path, stage_env)
    *lines, left = result.stderr.strip().splitlines()
    assert left == "left: compare old"  # the old report, and no temporary folder beside it
    line = one_line(subprocess.CompletedProcess([], result.returncode, "", "\n".join(lines)))
    assert line == (
        f"error: -o {disk}/compare: cannot write there (Read-only file system); give -o a "
        "folder on a writable disk (nothing was written)"
    )


# --- exigo push ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushable(tmp_path_factory) -> tuple[Path, dict]:
    """A DVC repo with one stage run: an output in the cache and a run-cache record to push."""
    tmp = tmp_path_factory.mktemp("push")
    env = make_env(tmp)
    project = tmp / "proj"
    project.mkdir()
    sh(["git", "init", "-q", "-b", "main"], project, env)
    dvc("init", "-q", cwd=project, env=env)
    dvc("stage", "add", "-q", "-n", "make", "-o", "out.txt", "echo made > out.txt",
        cwd=project, env=env)  # fmt: skip
    dvc("repro", "-q", cwd=project, env=env)
    return project, env


def test_push_with_no_parallel_uploads_is_refused(tmp_path, stage_env):
    line = one_line(exigo("push", "-j", "0", cwd=tmp_path, env=stage_env))
    assert line == "error: --jobs: at least 1 parallel upload (got 0)"


def test_push_to_an_http_remote_is_one_line_at_once(pushable):
    project, env = pushable
    url = f"http://127.0.0.1:{free_port()}/store"  # nothing listens there
    dvc("remote", "add", "-f", "web", url, cwd=project, env=env)
    line = one_line(exigo("push", "-r", "web", cwd=project, env=env))
    assert line == (
        f"error: DVC remote 'web' ({url}): an HTTP remote cannot hold DVC's run-cache, which is "
        "what exigo push shares; push to an S3 bucket or a shared folder (-r), or use dvc push "
        "for the outputs alone (nothing was sent)"
    )


def test_push_to_a_read_only_folder_is_one_line_with_no_dvc_lines(pushable, tmp_path):
    project, env = pushable
    folder = tmp_path / "ro"
    folder.mkdir()
    dvc("remote", "add", "-f", "ro", str(folder), cwd=project, env=env)
    script = f'mount -t tmpfs -o ro,size=1m tmpfs "{folder}" && "{sys.executable}" -m exigo.cli push -r ro'
    line = one_line(unshared(script, project, env))
    assert line == (
        f"error: DVC remote 'ro' ({folder}): read-only for you (access denied); ask for write "
        "access, or push to another remote (-r), then run exigo push again (nothing local was "
        "changed)"
    )
