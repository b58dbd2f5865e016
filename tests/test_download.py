"""The download stage: mirrors on a real local HTTP server, verification, fallback, cache."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FILES, idx_bytes, make_project, read_files, tiny_params

from exigo.datasets import BUILTIN, DatasetSpec, IdxFile, custom_spec, load_mnist_sample
from exigo.download import VerifyError, fetch_dataset, verify
from exigo.errors import DownloadError


def spec_for(tiny, mirrors=(), md5=True, sha256=True) -> DatasetSpec:
    """A dataset spec for the tiny files: archive md5 and/or payload sha256 known."""
    files = tuple(
        IdxFile(
            name,
            split,
            kind,
            md5=tiny.gz_md5[name] if md5 else None,
            sha256=tiny.payload_sha256[name] if sha256 else None,
            count=len(tiny.arrays[(split, kind)]),
        )
        for (split, kind), name in FILES.items()
    )
    return DatasetSpec("tiny", tuple(str(d) for d in range(10)), tuple(mirrors), files)


def quiet(_msg: str) -> None:
    pass


def assert_same(files, tiny) -> None:
    for key, array in tiny.arrays.items():
        np.testing.assert_array_equal(files[key].array, array)


def leftovers(cache) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and p.name not in FILES.values())


def test_downloads_and_verifies_from_a_mirror(tiny_idx, mirror, tmp_path):
    url = mirror.add("good", read_files(tiny_idx.folder))
    cache = tmp_path / "cache"
    files = fetch_dataset(spec_for(tiny_idx, [url]), cache_dir=cache, log=quiet)
    assert_same(files, tiny_idx)
    assert all(f.how == "archive md5" for f in files.values())
    assert sorted(p.name for p in (cache / "tiny").iterdir()) == sorted(FILES.values())


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
    victim = cache / "tiny" / FILES[("train", "images")]
    victim.write_bytes(victim.read_bytes()[:100])
    messages.clear()
    assert_same(
        fetch_dataset(spec_for(tiny_idx, [url]), cache_dir=cache, log=messages.append), tiny_idx
    )
    assert any("cached copy rejected" in m for m in messages)


def test_checksum_mismatch_is_rejected(tiny_idx):
    other = {n: "0" * 64 for n in FILES.values()}
    spec = custom_spec("x", None, other)
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


def test_mnist_sample_is_real_mnist_offline():
    images, labels = load_mnist_sample()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
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
    data = {"name": "idx", "source": url, "val_size": 0.25, "sha256": tiny_idx.payload_sha256}
    project = make_project(tmp_path / "proj", tiny_params(data=data), code=False)
    result = run_download(project, stage_env)
    assert result.returncode == 0, result.stderr
    out = project / "data" / "idx"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sizes"] == {"train": 300, "val": 100, "test": 100}
    assert set(meta["counts"]["val"].values()) == {10}  # stratified: 10 per class
    for split in ("train", "val", "test"):
        blob = torch.load(out / f"{split}.pt", weights_only=True)
        assert blob["images"].dtype == torch.uint8 and blob["labels"].dtype == torch.int64
    test = torch.load(out / "test.pt", weights_only=True)
    np.testing.assert_array_equal(test["images"].numpy(), tiny_idx.arrays[("test", "images")])
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
