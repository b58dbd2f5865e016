"""The built-in datasets published as whole files (CIFAR-10, CIFAR-100, SVHN) and the `idx` entry
beyond 28x28 grey: small files in the real formats, from the local mirror on 127.0.0.1 or a
folder, never from the network."""

from __future__ import annotations

import gzip
import hashlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import FILES, idx_bytes, write_tiny_idx
from test_formats import cifar_archive, svhn_mat

from exigo.core.errors import DownloadError
from exigo.core.registry import DATASETS, NoSettings
from exigo.data.download import check_source, fetch_dataset
from exigo.data.formats import CIFAR10, CIFAR100, read_cifar
from exigo.data.raw import RawDataset
from exigo.data.sources.idx import IdxSettings

DOWN = "http://127.0.0.1:9/down/"  # nothing listens there: refused at once
PUBLISHED = ("cifar10", "cifar100", "svhn")


def quiet(_msg: str) -> None:
    pass


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Tiny:
    """One dataset's files, small, in the real format, and what reading them must give."""

    name: str
    folder: Path  # the files, under their official names
    expected: RawDataset
    monkeypatch: pytest.MonkeyPatch

    def bytes(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.folder.iterdir()}

    def load(self, source: str | None = None, mirrors=(DOWN,), log=quiet) -> RawDataset:
        """The registered entry's load, its spec pointed at `mirrors` (never the official ones)
        and at the small files' md5s, as the IDX tests build a spec for their tiny files."""
        entry = DATASETS.get(self.name)
        module = sys.modules[entry.module]
        spec = entry.meta["spec"]
        files = tuple(
            replace(f, md5=md5((self.folder / f.filename).read_bytes())) for f in spec.files
        )
        self.monkeypatch.setattr(module, "SPEC", replace(spec, mirrors=tuple(mirrors), files=files))
        return entry.target(NoSettings(), source, log)


def write_published(name: str, folder: Path, seed: int = 0) -> RawDataset:
    """`name`'s files in `folder`, small; returns the arrays they hold."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "svhn":
        train_y, test_y = [10, 1, 2, 3, 10, 5, 6], [9, 10, 8, 7]
        train_x = svhn_mat(folder / "train_32x32.mat", train_y, seed)
        test_x = svhn_mat(folder / "test_32x32.mat", test_y, seed + 1)
        return RawDataset(
            train_x.transpose(3, 2, 0, 1),  # (H, W, C, N) -> (N, C, H, W)
            np.array(train_y) % 10,  # 10 is the digit 0
            test_x.transpose(3, 2, 0, 1),
            np.array(test_y) % 10,
            tuple(str(d) for d in range(10)),
        )
    layout, n_classes = {"cifar10": (CIFAR10, 10), "cifar100": (CIFAR100, 100)}[name]
    (spec_file,) = DATASETS.get(name).meta["spec"].files
    path = cifar_archive(folder / spec_file.filename, layout, n=4, n_classes=n_classes, seed=seed)
    splits = read_cifar(path, layout)  # the reader itself is tested in test_formats.py
    train, test = splits["train"], splits["test"]
    return RawDataset(train.images, train.labels, test.images, test.labels, train.classes)


@pytest.fixture(params=PUBLISHED)
def tiny(request, tmp_path, monkeypatch) -> Tiny:
    monkeypatch.setenv("EXIGO_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "files"
    return Tiny(request.param, folder, write_published(request.param, folder), monkeypatch)


def assert_same(raw: RawDataset, expected: RawDataset) -> None:
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(raw, name), getattr(expected, name), err_msg=name)
    assert raw.classes == expected.classes


def recorded(tiny: Tiny) -> dict:
    return {n: {"md5": md5(d), "checked": "checksum"} for n, d in tiny.bytes().items()}


def test_from_a_mirror_verified_and_cached(tiny, mirror, tmp_path):
    url = mirror.add(tiny.name, tiny.bytes())
    messages: list[str] = []
    raw = tiny.load(mirrors=[url], log=messages.append)
    assert_same(raw, tiny.expected)
    assert raw.train_images.shape[1:] == (3, 32, 32)
    assert raw.files == recorded(tiny)  # meta.json's "files"
    assert any(url in m and "verified: md5" in m for m in messages), messages
    cache = tmp_path / "cache"
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) == sorted(
        f"md5/{f['md5']}" for f in raw.files.values()
    )
    # The mirror gone: the cache answers, by content.
    messages.clear()
    assert_same(tiny.load(mirrors=[DOWN], log=messages.append), tiny.expected)
    assert [m for m in messages if ".mat" in m or ".tar.gz" in m] and all(
        "cached" in m for m in messages if m.startswith("  ")
    ), messages


def test_from_a_folder(tiny):
    messages: list[str] = []
    raw = tiny.load(source=str(tiny.folder), log=messages.append)
    assert_same(raw, tiny.expected)
    assert raw.files == recorded(tiny)
    for name in tiny.bytes():
        assert f"  {name}: {tiny.folder / name} (verified: md5)" in messages, messages


def test_a_folder_with_other_content_is_refused_naming_the_file(tiny, tmp_path):
    other = tmp_path / "other"
    write_published(tiny.name, other, seed=7)  # the same names, other content
    name = next(iter(tiny.bytes()))
    with pytest.raises(DownloadError) as err:
        tiny.load(source=str(other))
    assert f"  - {other / name}: checksum mismatch: got md5 {md5((other / name).read_bytes())}" in (
        str(err.value)
    )


def test_a_truncated_file_falls_through_to_the_next_source(tiny, mirror, tmp_path):
    good = tiny.bytes()
    folder = tmp_path / "partial-copy"
    folder.mkdir()
    for name, data in good.items():
        (folder / name).write_bytes(data[: len(data) // 2])
    truncated = mirror.add("truncated", {n: d[: len(d) // 3] for n, d in good.items()})
    mirror.add("dropped", good)
    dropped = f"{mirror.url}/short/dropped/"  # promises the whole file, sends half
    good_url = mirror.add("good", good)
    messages: list[str] = []
    raw = tiny.load(str(folder), mirrors=[truncated, dropped, good_url], log=messages.append)
    assert_same(raw, tiny.expected)
    for name in good:
        lines = [m for m in messages if m.startswith(f"  {name}: ")]
        assert str(folder / name) in lines[0] and "truncated" in lines[0], lines
        assert truncated + name in lines[1] and "checksum mismatch" in lines[1], lines
        assert dropped + name in lines[2] and "connection closed early" in lines[2], lines
        assert lines[3].startswith(f"  {name}: {good_url}{name} (verified: md5; "), lines


def test_every_source_failing_is_one_error_listing_them(tiny, mirror, tmp_path):
    names = [f.filename for f in DATASETS.get(tiny.name).meta["spec"].files]
    html = mirror.add("html", {n: b"<!DOCTYPE html><html>captive portal</html>" for n in names})
    missing = f"{mirror.url}/nothing-here/"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DownloadError) as err:
        tiny.load(str(empty), mirrors=[html, missing])
    msg = str(err.value)
    assert msg.startswith(f"could not get {names[0]} of dataset '{tiny.name}' from any source:\n")
    assert f"  - {empty}: no such file (looked for {names[0]})\n" in msg
    assert f"  - {html}{names[0]}: an HTML/XML page" in msg
    assert f"  - {missing}{names[0]}: HTTP 404" in msg
    hint = msg.splitlines()[-2:]
    assert hint[0].startswith("To run offline: put ") and all(n in hint[0] for n in names), hint
    assert "data.source" in msg and "mnist-sample" not in msg  # MNIST is no stand-in for colour


def test_check_source_stops_when_the_local_folder_changed(tiny, tmp_path):
    raw = tiny.load(source=str(tiny.folder))
    data_dir = Path("data") / tiny.name
    check_source(str(tiny.folder), raw.files, data_dir)  # unchanged: nothing to say
    name = next(iter(raw.files))
    write_published(tiny.name, tmp_path / "other", seed=3)
    (tiny.folder / name).write_bytes((tmp_path / "other" / name).read_bytes())
    with pytest.raises(DownloadError) as err:
        check_source(str(tiny.folder), raw.files, data_dir)
    assert str(err.value) == (
        f"data.source: {tiny.folder / name} changed since {data_dir}/ was built from it; run dvc"
        " repro -f download to read it again, then run again"
    )
    (tiny.folder / name).unlink()
    with pytest.raises(DownloadError, match="changed since"):
        check_source(str(tiny.folder), raw.files, data_dir)
    check_source("http://127.0.0.1:9/mirror/", raw.files, data_dir)  # a URL is not checked


def test_published_datasets_take_data_source_optionally():
    for name in PUBLISHED:
        entry = DATASETS.get(name)
        assert entry.meta["source"] == "optional" and entry.meta["source_help"]


# --- The idx entry: any size from 8x8, grey or channels-last colour -------------------------------


def write_idx(folder: Path, shape: tuple[int, ...], image_names: str = "idx3") -> dict:
    """The four IDX files with images of one item `shape` ((H, W) or (H, W, C)), gzipped under
    the standard names (image files under idx4 names if asked)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for (split, kind), name in FILES.items():
        n = 40 if split == "train" else 20
        if kind == "images":
            arrays[(split, kind)] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
            name = name.replace("-idx3-", f"-{image_names}-")
        else:
            arrays[(split, kind)] = (np.arange(n) % 10).astype(np.uint8)
        (folder / name).write_bytes(gzip.compress(idx_bytes(arrays[(split, kind)]), mtime=0))
    return arrays


@pytest.mark.parametrize(
    "shape, names",
    [((32, 32), "idx3"), ((20, 24, 3), "idx3"), ((32, 32, 3), "idx4"), ((16, 12, 1), "idx3")],
    ids=["32x32-grey", "24x20-rgb", "32x32-rgb-idx4-names", "12x16-one-channel"],
)
def test_idx_entry_takes_any_size_grey_or_channels_last(tmp_path, shape, names):
    arrays = write_idx(tmp_path / "mine", shape, names)
    raw = DATASETS.get("idx").target(IdxSettings(), str(tmp_path / "mine"), quiet)
    h, w, *c = shape
    assert raw.train_images.shape == (40, c[0] if c else 1, h, w)
    images = arrays[("test", "images")]
    nchw = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(raw.test_images, nchw)
    assert {f["checked"] for f in raw.files.values()} == {"structure only"}


@pytest.mark.parametrize(
    "shape, why",
    [
        ((7, 9), "images are 9x7 grey; at least 8x8"),
        ((32, 32, 2), "images have 2 channels (last axis of a 4-d IDX file); expected 1 (grey)"),
    ],
    ids=["too-small", "two-channels"],
)
def test_idx_entry_refuses_images_it_cannot_take(tmp_path, shape, why):
    write_idx(tmp_path / "mine", shape)
    with pytest.raises(DownloadError, match="could not get train-images") as err:
        DATASETS.get("idx").target(IdxSettings(), str(tmp_path / "mine"), quiet)
    assert why in str(err.value)


@pytest.mark.parametrize("shape", [(32, 32), (28, 28, 3)], ids=["32x32", "28x28-rgb"])
def test_mnist_stays_28x28_grey(tmp_path, shape):
    """The catalogued IDX datasets are pinned to their shape (and counts): a folder of other
    images is not MNIST, even where its content checksum would let structure decide."""
    write_idx(tmp_path / "not-mnist", shape)
    spec = replace(DATASETS.get("mnist").meta["spec"], mirrors=(DOWN,))
    with pytest.raises(DownloadError) as err:
        fetch_dataset(spec, source=str(tmp_path / "not-mnist"), cache_dir=tmp_path / "c", log=quiet)
    expected = {(32, 32): "32x32 grey", (28, 28, 3): "28x28 RGB"}[shape]
    assert f"images are {expected}, expected 28x28 grey" in str(err.value)
    assert "mnist-sample" in str(err.value)  # the offline stand-in for a 28x28 grey dataset


def test_a_tiny_idx_dataset_still_loads_as_grey(tmp_path):
    tiny = write_tiny_idx(tmp_path / "tiny")
    raw = DATASETS.get("idx").target(IdxSettings(), str(tiny.folder), quiet)
    assert raw.train_images.shape == (400, 1, 28, 28)
    np.testing.assert_array_equal(raw.train_images[:, 0], tiny.arrays[("train", "images")])
