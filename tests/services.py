"""Real services on 127.0.0.1 for the team tests: PostgreSQL, an S3 endpoint (moto_server), an
MLflow tracking server with basic auth. Each is started by a fixture with a free port, waits for
its health check with a deadline, and is stopped by PID afterwards. Credentials are generated per
run and never printed."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], bool], what: str, proc: subprocess.Popen, log: Path, timeout=90):
    """Poll `check` until it holds; fail with the service's log if it dies or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.3)
    pytest.fail(f"{what} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process group, SIGKILL it after `timeout`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def start(args: list[str], log: Path, env: dict | None = None, **kwargs) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, **kwargs
        )


# --- PostgreSQL ---------------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, else Debian's /usr/lib/postgresql/<v>/bin."""
    if found := shutil.which(name):
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    for folder in reversed(versions):
        if (folder / name).exists():
            return str(folder / name)
    pytest.fail(f"{name} not found: install PostgreSQL (apt-get install postgresql)")


@dataclass
class Postgres:
    port: int
    password: str  # of the role `exigo`, owner of every database created here

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://exigo:{self.password}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(self.url("postgres").replace("+psycopg2", ""))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)


def _unprivileged() -> dict:
    """initdb refuses to run as root (CI runs as root): run the server as `postgres` or `nobody`."""
    if os.geteuid() != 0:
        return {}
    import pwd

    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return {"user": entry.pw_uid, "group": entry.pw_gid}
    pytest.fail("running as root and neither a postgres nor a nobody user exists")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster in a temporary folder, on 127.0.0.1 with a free port."""
    ids = _unprivileged()
    folder = Path(tempfile.mkdtemp(prefix="exigo-pg-"))
    if ids:
        os.chown(folder, ids["user"], ids["group"])
    data, log = folder / "data", folder / "server.log"
    password = secrets.token_urlsafe(16)
    pwfile = folder / "pw"
    pwfile.write_text(password + "\n")
    if ids:
        os.chown(pwfile, ids["user"], ids["group"])
    subprocess.run(
        [pg_bin("initdb"), "-D", str(data), "-U", "exigo", f"--pwfile={pwfile}", "-A",
         "scram-sha-256", "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True, timeout=120, cwd=folder, **ids,
    )  # fmt: skip
    pwfile.unlink()
    port = free_port()
    options = f"-c listen_addresses={HOST} -p {port} -k {folder} -c fsync=off"
    proc = start([pg_bin("postgres"), "-D", str(data), *options.split()], log, cwd=folder, **ids)
    server = Postgres(port, password)

    def ready() -> bool:
        import psycopg2

        psycopg2.connect(server.url("postgres").replace("+psycopg2", ""), connect_timeout=2).close()
        return True

    try:
        wait_for(ready, "PostgreSQL", proc, log)
        yield server
    finally:
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


# --- S3 (moto_server) ---------------------------------------------------------------------------


@dataclass
class S3:
    url: str
    key_id: str
    secret: str

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def env(self) -> dict[str, str]:
        """What a process that talks to this endpoint directly (the MLflow server) needs."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> Iterator[S3]:
    """moto_server: an S3-compatible endpoint on 127.0.0.1 (in memory, gone when stopped)."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    exe = shutil.which("moto_server") or pytest.fail(
        "moto_server missing: pip install moto[server]"
    )
    proc = start([exe, "-H", HOST, "-p", str(port)], log)
    try:
        wait_for(lambda: http_ok(f"http://{HOST}:{port}/moto-api/"), "moto_server", proc, log)
        yield S3(f"http://{HOST}:{port}", "AKIA" + secrets.token_hex(8), secrets.token_hex(20))
    finally:
        stop(proc)


# --- MLflow tracking server with basic auth -----------------------------------------------------


@dataclass
class MlflowServer:
    url: str
    admin: tuple[str, str]
    start: Callable[[], None]
    stop: Callable[[], None]

    def add_user(self, name: str) -> tuple[str, str]:
        """A new account on the server; returns (username, password)."""
        from mlflow.server.auth.client import AuthServiceClient

        password = secrets.token_urlsafe(16)
        with _credentials(*self.admin):
            AuthServiceClient(self.url).create_user(name, password)
        return name, password


@contextlib.contextmanager
def _credentials(user: str, password: str):
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def mlflow_server(postgres, s3, tmp_path_factory) -> Iterator[MlflowServer]:
    """`mlflow server` as the README runs it: PostgreSQL stores, artifacts proxied to S3, basic
    auth on. `stop()`/`start()` take it down and bring it back on the same port and stores."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    backend = postgres.create_database("mlflow")
    auth_db = postgres.create_database("mlflow_auth")
    s3.client().create_bucket(Bucket="mlflow-artifacts")
    admin = ("admin", secrets.token_urlsafe(16))
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = EDIT\n"
        f"database_uri = {auth_db}\nadmin_username = {admin[0]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 300\n"  # else every request hashes the password again (seconds)
    )
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = {
        **os.environ,
        **s3.env(),
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),  # CSRF, needed by basic auth
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # GenAI jobs: 8 processes we do not use
    }
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key, None)
    args = [
        sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
        "--backend-store-uri", backend, "--artifacts-destination", "s3://mlflow-artifacts/exigo",
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = folder / "server.log"
    state: dict[str, subprocess.Popen] = {}

    def up() -> None:
        state["proc"] = proc = start(args, log, env=env, cwd=folder)
        wait_for(lambda: http_ok(f"{url}/health"), "mlflow server", proc, log, timeout=120)

    def down() -> None:
        stop(state["proc"])

    up()
    try:
        yield MlflowServer(url, admin, up, down)
    finally:
        down()
