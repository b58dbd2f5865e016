"""Shared fixtures: tiny generated IDX datasets, a local HTTP mirror on 127.0.0.1, tiny projects."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}


# Test files, longest first (seconds of the default suite on 2 cores, `--durations=0`). With
# `--dist loadfile --no-loadscope-reorder` (pyproject) xdist hands files out in this order, so
# the long end-to-end file starts at once instead of running alone at the end (xdist's own
# order is by test count, which put it last). Files not named here go after. The first two
# hold only slow and team tests: they lead the `-m "slow or team"` session CI runs.
LONGEST_FIRST = (
    "test_team.py",  # team: 742 s, one file (services, two clones, four pipelines)
    "test_pipeline_any.py",  # slow: three pipelines on other data, about 7 minutes
    "test_pipeline.py",  # 192 s
    "test_train.py",  # 105 s
    "test_models.py",  # ~50 s (every model, timm and user classes, checkpoints)
    "test_download.py",  # 63 s
    "test_embed.py",  # 63 s
    "test_evaluate.py",  # 55 s
    "test_faults_services.py",  # ~60 s (estimated from a run on a loaded machine)
    "test_saliency.py",  # 38 s
    "test_faults.py",  # 22 s
    "test_track.py",  # 19 s
    "test_params.py",  # 17 s
    "test_sweep.py",  # 15 s
    "test_compare.py",  # 2 s (the rest of it is slow)
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-file order kept


# `@pytest.mark.incremental` on a class: its tests are the steps of one story, in order; once a
# step fails, the later ones are reported as xfail naming it (pytest's "incremental testing"
# recipe), instead of failing on the state it left.
_FAILED_STEP: dict[type, str] = {}  # class -> its first failed step


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> None:
    if "incremental" in item.keywords and call.excinfo is not None and item.cls is not None:
        _FAILED_STEP.setdefault(item.cls, item.name)


def pytest_runtest_setup(item: pytest.Item) -> None:
    failed = item.cls is not None and _FAILED_STEP.get(item.cls)
    if failed and "incremental" in item.keywords:
        pytest.xfail(f"an earlier step failed: {failed}")


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0x0000 08 <ndim>, big-endian dims)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_digits(n: int, seed: int, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Learnable synthetic 28x28 images: class k lights a 6x6 block at its own place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 3 + 6 * (k // 4), 3 + 6 * (k % 4)
        dr, dc = rng.integers(-1, 2, size=2)
        images[i, r + dr : r + dr + 6, c + dc : c + dc + 6] = rng.integers(180, 256, size=(6, 6))
    return images, labels.astype(np.uint8)


@dataclass
class TinyIdx:
    folder: Path  # the four .gz files
    arrays: dict  # (split, kind) -> np.ndarray
    payload_sha256: dict  # filename -> sha256 of the decompressed IDX
    gz_md5: dict  # filename -> md5 of the .gz as written


def write_tiny_idx(folder: Path, n_train: int = 400, n_test: int = 100, seed: int = 0) -> TinyIdx:
    folder.mkdir(parents=True, exist_ok=True)
    train = make_digits(n_train, seed)
    test = make_digits(n_test, seed + 1)
    arrays = {
        ("train", "images"): train[0],
        ("train", "labels"): train[1],
        ("test", "images"): test[0],
        ("test", "labels"): test[1],
    }
    sha, md5 = {}, {}
    for key, name in FILES.items():
        payload = idx_bytes(arrays[key])
        data = gzip.compress(payload, compresslevel=9, mtime=0)
        (folder / name).write_bytes(data)
        sha[name] = hashlib.sha256(payload).hexdigest()
        md5[name] = hashlib.md5(data).hexdigest()
    return TinyIdx(folder, arrays, sha, md5)


@pytest.fixture(scope="session")
def tiny_idx(tmp_path_factory) -> TinyIdx:
    return write_tiny_idx(tmp_path_factory.mktemp("tiny_idx"))


class _Handler(SimpleHTTPRequestHandler):
    """Serves a folder; under /short/ it promises more bytes than it sends (a dropped connection)."""

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/short/"):
            path = Path(self.directory) / self.path.removeprefix("/short/")
            if not path.exists():
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@dataclass
class Mirror:
    root: Path  # served folder: each subfolder is one mirror
    url: str  # http://127.0.0.1:<port>

    def add(self, name: str, files: dict[str, bytes]) -> str:
        """Publish files under /<name>/; returns that mirror's URL."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        for fname, data in files.items():
            (folder / fname).write_bytes(data)
        return f"{self.url}/{name}/"


@contextmanager
def serve_mirror(root: Path):
    """A real HTTP server on 127.0.0.1 serving `root`; stopped on leaving."""
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Mirror(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mirror(tmp_path):
    """A mirror serving tmp_path/www for one test."""
    with serve_mirror(tmp_path / "www") as served:
        yield served


def read_files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES.values()}


TINY_PARAMS = {
    "data": {"val_size": 0.2},
    "model": {"cnn": {"channels": [4, 8], "hidden": 16, "dropout": 0.0}},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "device": "cpu"},
    "evaluate": {"batch_size": 64, "n_mistakes": 8, "n_confused": 3},
    "saliency": {
        "n_images": 4,
        "n_eval": 40,
        "n_randomization": 8,
        "integrated_gradients": {"steps": 4},
        "smoothgrad": {"samples": 2},
        "deletion_steps": 4,
        "batch_size": 64,
        "n_pairs": 2,
    },
}


def tiny_params(**sections) -> dict:
    """The project's real params.yaml, shrunk for tests (and overridden per section)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in {**TINY_PARAMS, **sections}.items():
        params.setdefault(section, {}).update(values)
    return params


def make_project(dest: Path, params: dict, code: bool = True) -> Path:
    """A copy of the project (dvc.yaml, stages, src) with the given params, ready to run stages."""
    dest.mkdir(parents=True, exist_ok=True)
    if code:
        for name in ("stages", "src"):
            shutil.copytree(
                ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        for name in ("dvc.yaml", ".gitignore", ".dvcignore", "pyproject.toml", "uv.lock"):
            shutil.copy(ROOT / name, dest / name)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def make_env(tmp: Path) -> dict:
    """Environment for stage subprocesses: a private download cache and MLflow store."""
    import os

    env = dict(os.environ)
    env["EXIGO_CACHE_DIR"] = str(tmp / "exigo-cache")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_ROOT", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])  # stages/ and exigo
    return env


@pytest.fixture
def stage_env(tmp_path) -> dict:
    return make_env(tmp_path)


def run_stage(
    name: str, project: Path, env: dict, check: bool = True
) -> subprocess.CompletedProcess:
    """Run `python -m stages.<name> [args]` in a project folder, as DVC would."""
    module, *args = name.split()
    result = subprocess.run(
        [sys.executable, "-m", f"stages.{module}", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, f"stage {name} failed:\n{result.stdout}\n{result.stderr}"
    return result


# Every stage `dvc repro` runs in a new project, in dvc.yaml's order.
PIPELINE = (
    "vega_bundle",
    "params",
    "download",
    "train",
    "evaluate",
    "saliency",
    "embed_pixels",
    "embed_untrained",
    "embed",
    "track",
)

# The stages after download, in an order DVC could run them (what `dvc repro` runs, by hand).
STAGES = (
    "train",
    "evaluate",
    "saliency",
    "embed_baseline pixels",
    "embed_baseline untrained",
    "embed",
)


@pytest.fixture
def tiny_project(tmp_path, tiny_idx, stage_env) -> Path:
    """A project whose data/idx holds the tiny dataset (the download stage already run)."""
    data = {
        "name": "idx",
        "source": str(tiny_idx.folder),
        "idx": {"sha256": tiny_idx.payload_sha256},
    }
    project = make_project(tmp_path / "proj", tiny_params(data=data), code=False)
    run_stage("download", project, stage_env)
    return project


def sh(args, cwd, env, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def dvc(*args, cwd, env, check=True) -> subprocess.CompletedProcess:
    return sh([shutil.which("dvc"), *args], cwd, env, check)


def _forget_mlflow_store(env_before: str | None) -> None:
    """Unset MLflow's process-wide URI and put MLFLOW_TRACKING_URI back as it was."""
    import os

    sys.modules["mlflow"].set_tracking_uri(None)  # also unsets MLFLOW_TRACKING_URI
    if env_before is not None:
        os.environ["MLFLOW_TRACKING_URI"] = env_before


@contextmanager
def mlflow_store(uri: str):
    """MLflow's fluent API (mlflow.pytorch.load_model, search_logged_models, models:/ URIs) on
    this store for the block, then on none. mlflow.set_tracking_uri, which exigo's log_run also
    calls, sets a process-wide URI and MLFLOW_TRACKING_URI in os.environ: left set, it sent the
    stages a later test ran (and its own lookups) to an earlier test's store."""
    import os

    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        _forget_mlflow_store(before)


@pytest.fixture(autouse=True)
def _no_mlflow_store_left_set():
    """Every test starts with MLflow's URI unset in this process, whatever the last one did (see
    mlflow_store); cheap: it imports nothing."""
    import os

    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        _forget_mlflow_store(before)


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


def init_repo(project: Path, env: dict) -> Path:
    """git init + dvc init with the project's DVC config and plot templates, committed."""
    sh(["git", "init", "-q", "-b", "main"], project, env)
    sh(["git", "config", "user.email", "test@example.com"], project, env)
    sh(["git", "config", "user.name", "test"], project, env)
    dvc("init", "-q", cwd=project, env=env)
    shutil.copy(ROOT / ".dvc" / "config", project / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", project / ".dvc" / "plots")  # our plot templates
    sh(["git", "add", "-A"], project, env)
    sh(["git", "commit", "-qm", "project"], project, env)
    return project


@pytest.fixture
def repo(tmp_path, tiny_idx, mirror, stage_env):
    """A fresh git + DVC repo holding the project, its data served by a mirror on 127.0.0.1."""
    url = mirror.add("mnist", read_files(tiny_idx.folder))
    data = {"name": "idx", "source": url, "idx": {"sha256": tiny_idx.payload_sha256}}
    project = make_project(tmp_path / "exigo-e2e", tiny_params(data=data))
    return init_repo(project, stage_env), stage_env
