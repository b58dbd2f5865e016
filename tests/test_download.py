"""The download stage: mirrors on a real local HTTP server, verification, fallback, cache."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FILES, idx_bytes, make_project, read_files, tiny_params, write_tiny_idx

from exigo.core.envvars import EnvError
from exigo.core.errors import DownloadError
from exigo.core.registry import DATASETS
from exigo.data.download import (
    DEADLINE_ENV,
    VerifyError,
    default_deadline,
    fetch_dataset,
    fetch_file,
    idx_wanted,
    sources,
    verify,
)
from exigo.data.idx import MNIST_SHAPE, DatasetSpec, IdxFile
from exigo.data.sources.idx import IdxSettings
from exigo.data.sources.idx import spec as custom_spec
from exigo.data.sources.mnist_sample import load_mnist_sample

BUILTIN = {e.name: e.meta["spec"] for e in DATASETS if isinstance(e.meta.get("spec"), DatasetSpec)}


def spec_for(tiny, mirrors=(), md5=True, sha256=True) -> DatasetSpec:
    """A dataset spec for the tiny files, catalogued as MNIST is (28x28 grey, item counts):
    archive md5 and/or payload sha256 known."""
    files = tuple(
        IdxFile(
            name,
            split,
            kind,
            md5=tiny.gz_md5[name] if md5 else None,
            sha256=tiny.payload_sha256[name] if sha256 else None,
            count=len(tiny.arrays[(split, kind)]),
            shape=MNIST_SHAPE if kind == "images" else None,
        )
        for (split, kind), name in FILES.items()
    )
    return DatasetSpec("tiny", tuple(str(d) for d in range(10)), tuple(mirrors), files)


def quiet(_msg: str) -> None:
    pass


def assert_same(files, tiny) -> None:
    for key, array in tiny.arrays.items():
        np.testing.assert_array_equal(files[key].array, array)


CONTENT_KEY = re.compile(r"(md5/[0-9a-f]{32}|sha256/[0-9a-f]{64})")


def cached(cache) -> list[str]:
    """The cache's entries, named by content (md5/<archive md5> or sha256/<payload sha256>)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def leftovers(cache) -> list[str]:
    """Anything in the cache but verified entries: partial or temporary files."""
    return [name for name in cached(cache) if not CONTENT_KEY.fullmatch(name)]


def test_downloads_and_verifies_from_a_mirror(tiny_idx, mirror, tmp_path):
    url = mirror.add("good", read_files(tiny_idx.folder))
    cache = tmp_path / "cache"
    files = fetch_dataset(spec_for(tiny_idx, [url]), cache_dir=cache, log=quiet)
    assert_same(files, tiny_idx)
    assert all(f.how == "archive md5" for f in files.values())
    assert cached(cache) == sorted(f"md5/{m}" for m in tiny_idx.gz_md5.values())


def test_recompressed_mirror_is_accepted_by_payload_checksum(tiny_idx, mirror, tmp_path):
    recompressed = {
        n: gzip.compress(gzip.decompress(d), compresslevel=1, mtime=12345)
        for n, d in read_files(tiny_idx.folder).items()
    }
    assert all(recompressed[n] != d for n, d in read_files(tiny_idx.folder).items())
    url = mirror.add("recompressed", recompressed)
    files = fetch_dataset(spec_for(tiny_idx, [url]), cache_dir=tmp_path / "cache", log=quiet)
    assert_same(files, tiny_idx)
    assert all("recompressed" in f.how for f in files.values())


def _corrupt(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    return bytes(flipped)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda d: d[: len(d) // 2], "truncated"),
        (_corrupt, "corrupt"),
        (lambda d: b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "HTML"),
        (lambda d: gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8))), "items"),
    ],
    ids=["truncated", "corrupt", "html", "other-content"],
)
def test_bad_file_is_rejected_and_next_source_used(tiny_idx, mirror, tmp_path, damage, reason):
    good = read_files(tiny_idx.folder)
    bad_url = mirror.add("bad", {n: damage(d) for n, d in good.items()})
    good_url = mirror.add("good", good)
    cache = tmp_path / "cache"
    messages: list[str] = []
    files = fetch_dataset(
        spec_for(tiny_idx, [bad_url, good_url]), cache_dir=cache, log=messages.append
    )
    assert_same(files, tiny_idx)
    assert any(reason in m and bad_url in m for m in messages), messages
    assert leftovers(cache) == []  # nothing partial or rejected left behind


def test_dropped_connection_is_rejected(tiny_idx, mirror, tmp_path):
    mirror.add("files", read_files(tiny_idx.folder))
    with pytest.raises(DownloadError, match="connection closed early|truncated") as err:
        fetch_dataset(
            spec_for(tiny_idx, [f"{mirror.url}/short/files/"]), cache_dir=tmp_path / "c", log=quiet
        )
    assert "short/files" in str(err.value)
    assert leftovers(tmp_path / "c") == [] and not list((tmp_path / "c").rglob("*.gz"))


def test_all_sources_failing_gives_one_clear_message(tiny_idx, mirror, tmp_path):
    html = mirror.add("html", {n: b"<html>captive portal</html>" for n in FILES.values()})
    missing = f"{mirror.url}/nothing-here/"
    folder = tmp_path / "empty-folder"
    folder.mkdir()
    spec = spec_for(tiny_idx, [html, missing])
    with pytest.raises(DownloadError) as err:
        fetch_dataset(spec, source=str(folder), cache_dir=tmp_path / "cache", log=quiet)
    msg = str(err.value)
    assert str(folder) in msg and html in msg and missing in msg
    assert "HTML" in msg and "HTTP 404" in msg and "no such file" in msg
    assert "data.source" in msg and "mnist-sample" in msg  # how to run offline
    assert not list((tmp_path / "cache").rglob("*.gz")) and leftovers(tmp_path / "cache") == []


def test_local_folder_source(tiny_idx, tmp_path):
    files = fetch_dataset(
        spec_for(tiny_idx, ["http://127.0.0.1:9/unreachable/"]),
        source=str(tiny_idx.folder),
        cache_dir=tmp_path / "cache",
        log=quiet,
    )
    assert_same(files, tiny_idx)


@pytest.mark.parametrize("kind", ["loop", "missing", "file"])
def test_a_source_folder_that_is_no_folder_says_why(tiny_idx, tmp_path, kind):
    folder = tmp_path / "idx"
    if kind == "loop":  # idx -> idx: every lookup of it fails with ELOOP
        folder.symlink_to(folder.name)
    elif kind == "file":
        folder.write_text("")
    with pytest.raises(DownloadError) as err:
        fetch_dataset(spec_for(tiny_idx), source=str(folder), cache_dir=tmp_path / "c", log=quiet)
    why = {
        "loop": "a symlink loop (a link in the path points back to itself); fix the link",
        "missing": "no such folder",
        "file": "not a folder",
    }[kind]
    assert f"\n  - {folder}: {why}\n" in str(err.value)


def test_cache_is_reused_and_a_damaged_copy_refetched(tiny_idx, mirror, tmp_path):
    url = mirror.add("good", read_files(tiny_idx.folder))
    cache = tmp_path / "cache"
    fetch_dataset(spec_for(tiny_idx, [url]), cache_dir=cache, log=quiet)
    # No source reachable now: everything comes from the cache.
    messages: list[str] = []
    offline = spec_for(tiny_idx, ["http://127.0.0.1:9/down/"])
    assert_same(fetch_dataset(offline, cache_dir=cache, log=messages.append), tiny_idx)
    assert all("cached" in m for m in messages)
    # A damaged cached file is rejected and fetched again.
    victim = cache / "md5" / tiny_idx.gz_md5[FILES[("train", "images")]]
    victim.write_bytes(victim.read_bytes()[:100])
    messages.clear()
    assert_same(
        fetch_dataset(spec_for(tiny_idx, [url]), cache_dir=cache, log=messages.append), tiny_idx
    )
    assert any("cached copy rejected" in m for m in messages)


def test_checksum_mismatch_is_rejected(tiny_idx):
    other = {n: "0" * 64 for n in FILES.values()}
    spec = custom_spec(IdxSettings(sha256=other))
    data = read_files(tiny_idx.folder)[FILES[("train", "labels")]]
    with pytest.raises(VerifyError, match="checksum mismatch"):
        verify(data, spec.files[1], 10)


def test_builtin_registry_agrees_with_torchvision():
    from torchvision import datasets

    for name, cls in {
        "mnist": datasets.MNIST,
        "fashion-mnist": datasets.FashionMNIST,
        "kmnist": datasets.KMNIST,
    }.items():
        spec = BUILTIN[name]
        assert list(spec.mirrors) == list(cls.mirrors)
        assert [(f.filename, f.md5) for f in spec.files] == [tuple(r) for r in cls.resources]
        assert len(spec.classes) == len(cls.classes) == 10
    assert BUILTIN["fashion-mnist"].classes == tuple(datasets.FashionMNIST.classes)

    def published(name: str) -> list[tuple[str, str]]:
        spec = DATASETS.get(name).meta["spec"]
        return [(m + f.filename, f.md5) for m in spec.mirrors for f in spec.files]

    # The datasets published as whole files (tests/test_sources.py); here, where torch is loaded.
    for name, cls in (("cifar10", datasets.CIFAR10), ("cifar100", datasets.CIFAR100)):
        assert published(name) == [(cls.url, cls.tgz_md5)]
        assert DATASETS.get(name).meta["spec"].files[0].filename == cls.filename
    svhn = datasets.SVHN.split_list
    assert published("svhn") == [(svhn[s][0], svhn[s][2]) for s in ("train", "test")]
    assert [f.filename for f in DATASETS.get("svhn").meta["spec"].files] == [
        svhn[s][1] for s in ("train", "test")
    ]


def test_mnist_sample_is_real_mnist_offline():
    images, labels = load_mnist_sample()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10


def run_download(project, env):
    return subprocess.run(
        [sys.executable, "-m", "stages.download"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_download_stage_writes_stratified_splits(tiny_idx, mirror, tmp_path, stage_env):
    url = mirror.add("good", read_files(tiny_idx.folder))
    data = {
        "name": "idx",
        "source": url,
        "val_size": 0.25,
        "idx": {"sha256": tiny_idx.payload_sha256},
    }
    project = make_project(tmp_path / "proj", tiny_params(data=data), code=False)
    result = run_download(project, stage_env)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, (
        result.stderr
    )  # e.g. torch's "NumPy array is not writable"
    out = project / "data" / "idx"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sizes"] == {"train": 300, "val": 100, "test": 100}
    assert set(meta["counts"]["val"].values()) == {10}  # stratified: 10 per class
    assert meta["files"] == {
        n: {"sha256": tiny_idx.payload_sha256[n], "checked": "checksum"} for n in FILES.values()
    }
    for split in ("train", "val", "test"):
        blob = torch.load(out / f"{split}.pt", weights_only=True)
        assert blob["images"].dtype == torch.uint8 and blob["labels"].dtype == torch.int64
    test = torch.load(out / "test.pt", weights_only=True)
    grey = test["images"].numpy()  # (N, 1, H, W)
    np.testing.assert_array_equal(grey[:, 0], tiny_idx.arrays[("test", "images")])
    # Same params and seed: the same bytes.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run_download(project, stage_env).returncode == 0
    assert before == {p.name: p.read_bytes() for p in out.iterdir()}


def test_mnist_sample_stage_has_fixed_stratified_test_split(tmp_path, stage_env):
    project = make_project(
        tmp_path / "proj", tiny_params(data={"name": "mnist-sample"}), code=False
    )
    assert run_download(project, stage_env).returncode == 0
    meta = json.loads((project / "data/mnist-sample/meta.json").read_text())
    assert meta["sizes"]["test"] == 1000 and set(meta["counts"]["test"].values()) == {100}
    first = (project / "data/mnist-sample/test.pt").read_bytes()
    other = make_project(
        tmp_path / "other", tiny_params(data={"name": "mnist-sample"}, base={"seed": 7}), code=False
    )
    assert run_download(other, stage_env).returncode == 0
    assert (
        other / "data/mnist-sample/test.pt"
    ).read_bytes() == first  # the seed moves val, not test
    assert (other / "data/mnist-sample/val.pt").read_bytes() != (
        project / "data/mnist-sample/val.pt"
    ).read_bytes()


# --- Real data in the forms people have it -------------------------------------------------


def test_mnist_payload_checksums_are_known():
    """Recompressed or uncompressed full MNIST copies are verified exactly, by content."""
    for f in BUILTIN["mnist"].files:
        assert f.md5 and re.fullmatch(r"[0-9a-f]{64}", f.sha256 or ""), f
    assert len({f.sha256 for f in BUILTIN["mnist"].files}) == 4


def _write_forms(folder, tiny, form: str) -> None:
    """The four tiny files under the names and compression a given kind of copy uses."""
    for name in FILES.values():
        payload = gzip.decompress((tiny.folder / name).read_bytes())
        stem = name.removesuffix(".gz")
        dotted = stem.replace("-idx", ".idx")
        target, data = {
            "torchvision-raw": (stem, payload),
            "kaggle": (dotted, payload),
            "kaggle-gz": (f"{dotted}.gz", gzip.compress(payload, mtime=1)),
            "kaggle-folder": (f"{stem}/{stem}", payload),
        }[form]
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        (folder / target).write_bytes(data)


@pytest.mark.parametrize("form", ["torchvision-raw", "kaggle", "kaggle-gz", "kaggle-folder"])
def test_folder_of_uncompressed_or_renamed_files(tiny_idx, tmp_path, form):
    folder = tmp_path / form
    _write_forms(folder, tiny_idx, form)
    messages: list[str] = []
    files = fetch_dataset(
        spec_for(tiny_idx), source=str(folder), cache_dir=tmp_path / "c", log=messages.append
    )
    assert_same(files, tiny_idx)
    assert all(f.how.startswith("payload sha256") and f.pinned for f in files.values())
    assert not [m for m in messages if "warning" in m]


def test_unknown_content_in_a_named_folder_is_accepted_on_structure(tiny_idx, mirror, tmp_path):
    """A built-in dataset whose content checksum is unknown (only its archive md5 is) and whose
    archive differs: accepted from a folder the user named, with one warning; never from a
    mirror tried automatically."""
    folder = tmp_path / "distro-package"
    _write_forms(folder, tiny_idx, "kaggle-gz")  # other archives of the same content
    spec = spec_for(tiny_idx, ["http://127.0.0.1:9/down/"], md5=True, sha256=False)
    messages: list[str] = []
    files = fetch_dataset(spec, source=str(folder), cache_dir=tmp_path / "c", log=messages.append)
    assert_same(files, tiny_idx)
    assert all(f.unofficial and not f.pinned for f in files.values())
    assert {k: f.sha256 for k, f in files.items()} == {
        k: tiny_idx.payload_sha256[n] for k, n in FILES.items()
    }
    warnings = [m for m in messages if m.startswith("warning:")]
    assert len(warnings) == 1, messages
    assert "could not be checked against the official checksums" in warnings[0]
    assert str(folder) in warnings[0] and "meta.json" in warnings[0]
    assert cached(tmp_path / "c") == []  # content no checksum pins is never cached
    # The same files on a mirror: refused.
    url = mirror.add(
        "other", {n: (folder / n.replace("-idx", ".idx")).read_bytes() for n in FILES.values()}
    )
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_dataset(spec_for(tiny_idx, [url], sha256=False), cache_dir=tmp_path / "c2", log=quiet)


@pytest.mark.parametrize(
    "damage",
    ["wrong-count", "label-out-of-range", "27x28"],
)
def test_named_folder_with_wrong_structure_is_refused(tiny_idx, tmp_path, damage):
    folder = tmp_path / "copy"
    _write_forms(folder, tiny_idx, "torchvision-raw")
    images, labels = tiny_idx.arrays[("train", "images")], tiny_idx.arrays[("train", "labels")]
    if damage == "wrong-count":
        labels = labels[:-1]
        images = images[:-1]
    elif damage == "label-out-of-range":
        labels = labels.copy()
        labels[0] = 10
    else:
        images = images[:, :27, :]
    (folder / "train-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    spec = spec_for(tiny_idx, md5=True, sha256=False)  # lenient: content checksum unknown
    with pytest.raises(DownloadError) as err:
        fetch_dataset(spec, source=str(folder), cache_dir=tmp_path / "c", log=quiet)
    assert str(folder) in str(err.value)
    assert {
        "wrong-count": "items, expected",
        "label-out-of-range": "out of range",
        "27x28": "images are 28x27 grey, expected 28x28 grey",  # width x height
    }[damage] in str(err.value)


def test_named_folder_with_other_content_is_refused_when_its_checksum_is_known(tiny_idx, tmp_path):
    """MNIST's content checksums are known: a folder holding something else is not MNIST."""
    other = write_tiny_idx(tmp_path / "other", seed=9)
    spec = spec_for(tiny_idx, md5=True, sha256=True)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_dataset(spec, source=str(other.folder), cache_dir=tmp_path / "c", log=quiet)


# --- Data faults ---------------------------------------------------------------------------


def test_a_changed_local_folder_is_read_again_never_the_cache(tmp_path):
    """The cache is keyed by content: files changed in place in data.source are what you get."""
    folder = tmp_path / "mine"
    first = write_tiny_idx(folder, seed=0)
    spec = custom_spec(IdxSettings())
    cache = tmp_path / "cache"
    assert_same(fetch_dataset(spec, source=str(folder), cache_dir=cache, log=quiet), first)
    second = write_tiny_idx(folder, seed=5)  # same names, new content
    assert_same(fetch_dataset(spec, source=str(folder), cache_dir=cache, log=quiet), second)


@pytest.mark.slow
def test_a_changed_local_folder_stops_train_until_download_reads_it_again(tmp_path, stage_env):
    """DVC cannot watch a folder a param names: train checks it, and says how to refresh."""
    from conftest import run_stage

    folder = tmp_path / "mine"
    write_tiny_idx(folder, seed=0)
    data = {"name": "idx", "source": str(folder)}
    project = make_project(
        tmp_path / "proj", tiny_params(data=data, train={"epochs": 1}), code=False
    )
    run_download(project, stage_env)
    run_stage("train", project, stage_env)
    gzip_again = folder / FILES[("train", "images")]
    gzip_again.write_bytes(gzip.compress(gzip.decompress(gzip_again.read_bytes()), 1))
    run_stage("train", project, stage_env)  # recompressed, same content: nothing changed
    second = write_tiny_idx(folder, seed=5)  # same names, new content
    result = run_stage("train", project, stage_env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: data.source: {folder / FILES[('train', 'images')]} changed since data/idx/ was "
        "built from it; run dvc repro -f download to read it again, then run again"
    )
    run_download(project, stage_env)
    run_stage("train", project, stage_env)
    test = torch.load(project / "data/idx/test.pt", weights_only=True)
    np.testing.assert_array_equal(test["images"].numpy()[:, 0], second.arrays[("test", "images")])


def _with_counts(folder, tiny, split: str, n_images: int, n_labels: int) -> None:
    images = np.resize(tiny.arrays[(split, "images")], (n_images, 28, 28))
    labels = np.resize(tiny.arrays[(split, "labels")], (n_labels,))
    for kind, array in (("images", images), ("labels", labels)):
        (folder / FILES[(split, kind)]).write_bytes(gzip.compress(idx_bytes(array), mtime=0))


@pytest.mark.parametrize(
    "split, n_images, n_labels",
    [("train", 600, 700), ("train", 600, 500), ("test", 200, 150), ("test", 100, 101)],
)
def test_images_and_labels_of_different_counts_stop_download(
    tiny_idx, tmp_path, stage_env, split, n_images, n_labels
):
    folder = tmp_path / "mismatch"
    write_tiny_idx(folder)
    _with_counts(folder, tiny_idx, split, n_images, n_labels)
    data = {"name": "idx", "source": str(folder)}
    project = make_project(tmp_path / "proj", tiny_params(data=data), code=False)
    result = run_download(project, stage_env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    images, labels = folder / FILES[(split, "images")], folder / FILES[(split, "labels")]
    assert line.startswith("error: ") and str(images) in line and str(labels) in line, line
    assert f"{n_images:,} images" in line and f"{n_labels:,} labels" in line, line
    assert not (project / "data").exists()


def test_failed_sources_are_listed_once(tiny_idx, mirror, tmp_path):
    good = read_files(tiny_idx.folder)
    bad = mirror.add("bad", {n: b"<html>oops</html>" for n in good})
    messages: list[str] = []
    fetch_dataset(
        spec_for(tiny_idx, [bad, mirror.add("good", good)]),
        cache_dir=tmp_path / "c",
        log=messages.append,
    )
    for name in FILES.values():
        assert sum(bad + name in m for m in messages) == 1, messages
    # All failing: each failure once, in the error, and not also in the log.
    messages.clear()
    with pytest.raises(DownloadError) as err:
        fetch_dataset(spec_for(tiny_idx, [bad]), cache_dir=tmp_path / "c3", log=messages.append)
    assert str(err.value).count(bad) == 1 and not [m for m in messages if bad in m]


class _FaultyMirror(BaseHTTPRequestHandler):
    """/trickle/<file>: promises the whole file, then sends one byte every 0.1 s (for at most
    5 s). /slow/<file>: sends it in 64 kB pieces, 0.05 s apart. /rmcache/<file>: removes the
    download cache folder, then sends the file."""

    files: dict[str, bytes] = {}
    cache: Path | None = None

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        mode, _, name = self.path.strip("/").partition("/")
        data = self.files.get(name)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            if mode == "trickle":
                for i in range(50):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.1)
                return  # then hang up early
            if mode == "rmcache" and self.cache is not None:
                shutil.rmtree(self.cache, ignore_errors=True)
            step = 1 << 16
            for start in range(0, len(data), step):
                self.wfile.write(data[start : start + step])
                self.wfile.flush()
                if mode == "slow":
                    time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: that is the point


@pytest.fixture
def faulty_mirror(tiny_idx):
    handler = type("Handler", (_FaultyMirror,), {"files": read_files(tiny_idx.folder)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_trickling_mirror_hits_the_per_file_deadline(tiny_idx, mirror, faulty_mirror, tmp_path):
    """A byte every 0.1 s never trips a per-read timeout; the per-file deadline cuts it off and
    the next source is used."""
    _, url = faulty_mirror
    trickle = f"{url}/trickle/"
    good = mirror.add("good", read_files(tiny_idx.folder))
    messages: list[str] = []
    files = fetch_dataset(
        spec_for(tiny_idx, [trickle, good]),
        cache_dir=tmp_path / "c",
        log=messages.append,
        deadline_s=1,
    )
    assert_same(files, tiny_idx)
    cut = [m for m in messages if trickle in m]
    assert len(cut) == 4 and all("within the 1 s limit" in m for m in cut), messages
    assert all(DEADLINE_ENV in m for m in cut)


def test_deadline_from_the_environment(monkeypatch):
    monkeypatch.setenv(DEADLINE_ENV, "12.5")
    assert default_deadline() == 12.5
    monkeypatch.setenv(DEADLINE_ENV, "soon")
    with pytest.raises(
        EnvError, match=rf"^{DEADLINE_ENV}: .*: a number above 0 \(unset: 600\) \(got 'soon'\)$"
    ):
        default_deadline()


def test_large_downloads_show_progress(faulty_mirror, tmp_path, monkeypatch):
    """A large file reports bytes so far and the rate while it downloads, and at the end."""
    handler, url = faulty_mirror
    images = np.random.default_rng(0).integers(0, 256, (2000, 28, 28), dtype=np.uint8)
    payload = idx_bytes(images)  # 1.6 MB
    handler.files = {**handler.files, "big.gz": gzip.compress(payload, compresslevel=0)}
    spec = DatasetSpec(
        "big",
        tuple(str(d) for d in range(10)),
        (f"{url}/slow/",),
        (IdxFile("big.gz", "train", "images", count=2000),),
    )
    monkeypatch.setattr("exigo.data.download.PROGRESS_EVERY_S", 0.2)
    messages: list[str] = []
    where = sources(spec.name, spec.mirrors, None, "", tmp_path / "c", messages.append)
    got = fetch_file(idx_wanted(spec.files[0], 10), where)
    np.testing.assert_array_equal(got.array, images)
    progress = [
        m
        for m in messages
        if re.search(r"big\.gz: [\d.]+ (kB|MB) of 1\.6 MB, [\d.]+ (kB|MB)/s$", m)
    ]
    assert progress, messages
    assert re.search(r"1\.6 MB in [\d.]+ s, [\d.]+ (kB|MB)/s\)$", messages[-1]), messages


def test_cache_folder_removed_during_a_download(tiny_idx, faulty_mirror, tmp_path):
    handler, url = faulty_mirror
    cache = tmp_path / "cache"
    cache.mkdir()
    handler.cache = cache
    messages: list[str] = []
    files = fetch_dataset(
        spec_for(tiny_idx, [f"{url}/rmcache/"]), cache_dir=cache, log=messages.append
    )
    assert_same(files, tiny_idx)
    assert len(cached(cache)) >= 1 and leftovers(cache) == []


def test_an_unwritable_cache_is_a_warning_about_the_cache(tiny_idx, mirror, tmp_path):
    """The data arrived and was verified: a cache that cannot be written is named as such
    (once), never blamed on the source."""
    url = mirror.add("good", read_files(tiny_idx.folder))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    messages: list[str] = []
    files = fetch_dataset(
        spec_for(tiny_idx, [url]), cache_dir=blocker / "cache", log=messages.append
    )
    assert_same(files, tiny_idx)
    warnings = [m for m in messages if m.startswith("warning:")]
    assert (
        len(warnings) == 1
        and "download cache" in warnings[0]
        and str(blocker / "cache") in warnings[0]
    )
    assert not [m for m in messages if url in m and "verified" not in m], messages


@pytest.mark.slow  # 70,000 images; the logic is covered on tiny files above
def test_download_stage_takes_a_builtin_dataset_from_a_named_folder_on_structure(
    tmp_path, stage_env
):
    """Fashion-MNIST from a distribution package (other archives, uncompressed here, the
    official counts): accepted with one warning, its payload sha256 recorded in meta.json."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion"
    folder.mkdir()
    sha = {}
    for (split, kind), name in FILES.items():
        n = 60_000 if split == "train" else 10_000
        shape = (n, 28, 28) if kind == "images" else (n,)
        array = rng.integers(0, 256 if kind == "images" else 10, shape, dtype=np.uint8)
        payload = idx_bytes(array)
        (folder / name.removesuffix(".gz").replace("-idx", ".idx")).write_bytes(payload)
        sha[name] = hashlib.sha256(payload).hexdigest()
    data = {"name": "fashion-mnist", "source": str(folder), "val_size": 0.1}
    project = make_project(tmp_path / "proj", tiny_params(data=data), code=False)
    result = run_download(project, stage_env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1 and "could not be checked against the official" in warnings[0]
    assert "Warning" not in result.stderr, result.stderr
    meta = json.loads((project / "data/fashion-mnist/meta.json").read_text())
    assert {n: f["sha256"] for n, f in meta["files"].items()} == sha
    assert {f["checked"] for f in meta["files"].values()} == {"structure only"}
    assert meta["sizes"] == {"train": 54_000, "val": 6_000, "test": 10_000}
    cache = Path(stage_env["EXIGO_CACHE_DIR"])
    assert not [p for p in cache.rglob("*") if p.is_file()]  # unpinned content is never cached
