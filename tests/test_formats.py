"""The readers of CIFAR's pickled batches, SVHN's MATLAB files and a folder of images, on small
files written in the real formats; each bad input is one line naming the file."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exigo.core.errors import ExigoError
from exigo.data.formats import CIFAR10, CIFAR100, read_cifar, read_folder, read_svhn


def cifar_archive(
    path: Path, layout, n: int = 6, extra: dict | None = None, n_classes: int = 10, seed: int = 0
) -> Path:
    """A tar.gz laid out like the official python archive: pickled dicts with bytes keys, `n`
    images per batch labelled 0, 1, 2, ... in turn."""
    rng = np.random.default_rng(seed)
    members = {}
    names_key = layout.names_key.encode()
    members[layout.meta] = {names_key: [f"class{i}".encode() for i in range(n_classes)]}
    for name in (*layout.train, layout.test):
        members[name] = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            layout.labels_key.encode(): [i % n_classes for i in range(n)],
            b"filenames": [f"{i}.png".encode() for i in range(n)],
        }
    members.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            data = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"{layout.folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("layout", [CIFAR10, CIFAR100], ids=["cifar10", "cifar100"])
def test_cifar_archives_read_as_colour_images(tmp_path, layout):
    splits = read_cifar(cifar_archive(tmp_path / "c.tar.gz", layout), layout)
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (6 * len(layout.train), 3, 32, 32)
    assert test.images.shape == (6, 3, 32, 32) and test.labels.tolist() == list(range(6))
    assert train.classes == tuple(f"class{i}" for i in range(10))
    # Row-major CHW, as the format documents it: the first 1,024 bytes are the red channel.
    with tarfile.open(tmp_path / "c.tar.gz") as tar:
        raw = pickle.loads(tar.extractfile(f"{layout.folder}/{layout.test}").read())[b"data"]
    assert np.array_equal(test.images[0, 0].reshape(-1), raw[0, :1024])


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/exigo-pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    evil = {CIFAR10.test: pickle.dumps({b"data": RunsCode()}, protocol=2)}
    archive = cifar_archive(tmp_path / "evil.tar.gz", CIFAR10, extra=evil)
    with pytest.raises(ExigoError, match=r"test_batch: not a CIFAR batch .*unsafe content refused"):
        read_cifar(archive, CIFAR10)
    assert not Path("/tmp/exigo-pwned").exists()


def test_cifar_archives_with_missing_or_wrong_members_are_one_line(tmp_path):
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz"):
        pass
    with pytest.raises(ExigoError, match=r"no cifar-10-batches-py/data_batch_1 inside"):
        read_cifar(tmp_path / "empty.tar.gz", CIFAR10)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ExigoError, match=r"junk.tar.gz: not a readable tar.gz"):
        read_cifar(tmp_path / "junk.tar.gz", CIFAR10)
    short = {CIFAR10.test: pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})}
    archive = cifar_archive(tmp_path / "short.tar.gz", CIFAR10, extra=short)
    with pytest.raises(ExigoError, match=r"expected rows of 3,072 bytes"):
        read_cifar(archive, CIFAR10)


def svhn_mat(path: Path, labels: list[int], seed: int = 1) -> np.ndarray:
    """A MATLAB v5 file laid out like SVHN's: X uint8 (32, 32, 3, N), y (N, 1) with 10 for the
    digit 0. Returns X."""
    from scipy.io import savemat

    x = np.random.default_rng(seed).integers(0, 256, (32, 32, 3, len(labels)), dtype=np.uint8)
    savemat(path, {"X": x, "y": np.array(labels, dtype=np.uint8).reshape(-1, 1)})
    return x


def test_svhn_mat_files_read_with_ten_as_zero(tmp_path):
    x = svhn_mat(tmp_path / "train_32x32.mat", [10, 1, 2, 10, 9])
    split = read_svhn(tmp_path / "train_32x32.mat")
    assert split.images.shape == (5, 3, 32, 32) and split.labels.tolist() == [0, 1, 2, 0, 9]
    assert np.array_equal(split.images[3, 1], x[:, :, 1, 3])  # (H, W, C, N) -> (N, C, H, W)
    (tmp_path / "bad.mat").write_bytes(b"MATLAB? no")
    with pytest.raises(ExigoError, match=r"bad.mat: not a readable MATLAB file"):
        read_svhn(tmp_path / "bad.mat")


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_an_rgb_folder_of_three_classes(tmp_path):
    rng = np.random.default_rng(2)
    for c in ("cat", "dog", "eel"):
        for i in range(3):
            save(tmp_path / c / f"{i}.png", rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    (train,) = read_folder(tmp_path).values()
    assert train.images.shape == (9, 3, 12, 10) and train.classes == ("cat", "dog", "eel")
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    resized = read_folder(tmp_path, size=(16, 16))["train"]
    assert resized.images.shape == (9, 3, 16, 16)


def test_a_grey_folder_with_train_and_test_is_one_channel(tmp_path):
    rng = np.random.default_rng(3)
    for split in ("train", "test"):
        for c in ("a", "b"):
            for i in range(2):
                save(
                    tmp_path / split / c / f"{i}.png", rng.integers(0, 256, (9, 9), dtype=np.uint8)
                )
    splits = read_folder(tmp_path)
    assert set(splits) == {"train", "test"}
    assert splits["test"].images.shape == (4, 1, 9, 9) and splits["test"].classes == ("a", "b")


def test_bad_folders_are_one_line_each(tmp_path):
    rng = np.random.default_rng(4)

    def img(h=10, w=10):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    with pytest.raises(ExigoError, match=r"is not a folder of class subfolders"):
        read_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExigoError, match=r"empty: no class subfolders"):
        read_folder(tmp_path / "empty")
    sizes = tmp_path / "sizes"
    save(sizes / "a" / "x.png", img())
    save(sizes / "b" / "y.png", img(12, 14))
    with pytest.raises(ExigoError, match=r"y.png is 14x12 but .*x.png is 10x10: set data.size"):
        read_folder(sizes)
    hollow = tmp_path / "hollow"
    save(hollow / "a" / "x.png", img())
    (hollow / "b").mkdir()
    with pytest.raises(ExigoError, match=r"no images in class 'b'"):
        read_folder(hollow)
    broken = tmp_path / "broken"
    save(broken / "a" / "x.png", img())
    save(broken / "b" / "y.png", img())
    data = (broken / "b" / "y.png").read_bytes()
    (broken / "b" / "y.png").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ExigoError, match=r"y.png: not a readable image"):
        read_folder(broken)
    stray = tmp_path / "stray"
    for split, classes in (("train", "ab"), ("test", "abz")):
        for c in classes:
            save(stray / split / c / "x.png", img())
    with pytest.raises(ExigoError, match=r"class 'z' is not in .*train"):
        read_folder(stray)
    tiny = tmp_path / "tiny"
    save(tiny / "a" / "x.png", img(4, 4))
    save(tiny / "b" / "y.png", img(4, 4))
    with pytest.raises(ExigoError, match=r"4x4 images; at least 8x8"):
        read_folder(tiny)
