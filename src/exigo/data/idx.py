"""IDX files (the format of MNIST and its kin): what a published file is, how to verify and parse
it, and the names copies of it go by. The datasets themselves are entries in `exigo.data.sources`."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


IDX_UNSIGNED_BYTE = 0x08  # the only element type 28x28 image datasets use

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


def idx_files(
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


class IdxFormatError(ValueError):
    """The bytes are not the IDX file we expected."""


def parse_idx(payload: bytes, spec: IdxFile, n_classes: int) -> np.ndarray:
    """Parse a decompressed IDX payload and check it is what `spec` describes."""
    import numpy as np

    if len(payload) < 4:
        raise IdxFormatError(f"too short for an IDX file ({len(payload)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", payload[:4])
    if zero != 0 or dtype_code != IDX_UNSIGNED_BYTE:
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


def register_idx(spec: DatasetSpec, module: str) -> None:
    """Register a catalogued IDX dataset: its load function fetches and verifies `spec`'s four
    files (data.source first, then the mirrors) with `exigo.data.download.load_idx`."""
    from exigo.core.registry import DATASETS, NoSettings

    def load(settings: NoSettings, source: str | None, log=print):  # noqa: ANN202
        from exigo.data.download import load_idx

        return load_idx(spec, source, log)

    DATASETS.add(spec.name, load, NoSettings, module, spec=spec)
