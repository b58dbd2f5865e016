"""IDX files (the format of MNIST and its kin): what a published file is, how to verify and parse
it, and the names copies of it go by. The datasets themselves are entries in `exigo.data.sources`.

Images are 3-d IDX (N, H, W) grey, or 4-d (N, H, W, C) channels-last with C = 1 or 3; any size from
8x8 up, unless the file's spec pins one (the catalogued datasets are 28x28 grey).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exigo.data.raw import MIN_SIDE

if TYPE_CHECKING:
    import numpy as np


IDX_UNSIGNED_BYTE = 0x08  # the only element type image datasets use: pixels and labels 0..255

SPLIT_FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
MNIST_SHAPE = (28, 28)  # (H, W) of MNIST and its kin: grey, one 3-d IDX file per split


@dataclass(frozen=True)
class IdxFile:
    """One published file, with what we know of its content."""

    filename: str
    split: str  # train | test
    kind: str  # images | labels
    md5: str | None = None  # of the .gz exactly as the official mirrors publish it
    sha256: str | None = None  # of the decompressed IDX payload: survives recompression
    count: int | None = None  # number of items, when known
    shape: tuple[int, ...] | None = None  # one image's shape, (H, W) grey or (H, W, C); None: any


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...] = ()
    files: tuple[IdxFile, ...] = field(default_factory=tuple)


Four = tuple[str, str, str, str]  # one value per file, in SPLIT_FILES order


def idx_files(
    md5s: Four,
    n_train: int,
    n_test: int,
    sha256s: Four | tuple[None, ...] = (None,) * 4,
    shape: tuple[int, ...] = MNIST_SHAPE,
) -> tuple[IdxFile, ...]:
    """The four files of a catalogued dataset: their checksums, item counts and image shape."""
    counts = {"train": n_train, "test": n_test}
    return tuple(
        IdxFile(
            fname,
            split,
            kind,
            md5=md5,
            sha256=sha,
            count=counts[split],
            shape=shape if kind == "images" else None,
        )
        for ((split, kind), fname), md5, sha in zip(SPLIT_FILES.items(), md5s, sha256s, strict=True)
    )


def local_names(filename: str) -> tuple[str, ...]:
    """The names one file goes by in the copies people have, in the order a folder is searched:
    the official .gz, uncompressed (torchvision's raw/ folders), Kaggle's dotted form (plain and
    gzipped), and Kaggle's folder of the same name holding the file. Image files may also say
    idx4 (4-d, channels-last colour images) where the official names say idx3."""
    stem = filename.removesuffix(".gz")  # train-images-idx3-ubyte
    dotted = stem.replace("-idx", ".idx", 1)  # train-images.idx3-ubyte
    names = (filename, stem, dotted, f"{dotted}.gz", f"{stem}/{stem}")
    if "-idx3-" in filename:
        names += local_names(filename.replace("-idx3-", "-idx4-"))
    return names


class IdxFormatError(ValueError):
    """The bytes are not the IDX file we expected."""


def describe_shape(shape: tuple[int, ...]) -> str:
    """One image's shape as people say it: (28, 28) -> '28x28 grey', (32, 32, 3) -> '32x32 RGB'
    (width x height)."""
    h, w, *c = shape
    kinds = {(): "grey", (1,): "grey (1 channel)", (3,): "RGB"}
    return f"{w}x{h} {kinds.get(tuple(c)) or f'{c[0]} channels'}"


def _check_images(shape: tuple[int, ...], spec: IdxFile) -> None:
    item = tuple(shape[1:])
    if len(item) == 3 and item[2] not in (1, 3):
        raise IdxFormatError(
            f"images have {item[2]} channels (last axis of a 4-d IDX file); expected 1 (grey)"
            " or 3 (RGB)"
        )
    if spec.shape is not None and item != spec.shape:
        raise IdxFormatError(
            f"images are {describe_shape(item)}, expected {describe_shape(spec.shape)}"
        )
    if min(item[:2]) < MIN_SIDE:
        raise IdxFormatError(f"images are {describe_shape(item)}; at least {MIN_SIDE}x{MIN_SIDE}")


def parse_idx(payload: bytes, spec: IdxFile, n_classes: int) -> np.ndarray:
    """Parse a decompressed IDX payload and check it is what `spec` describes. Images come back
    (N, H, W) from a 3-d file and (N, C, H, W) from a 4-d channels-last one; labels (N,)."""
    import numpy as np

    if len(payload) < 4:
        raise IdxFormatError(f"too short for an IDX file ({len(payload)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", payload[:4])
    if zero != 0 or dtype_code != IDX_UNSIGNED_BYTE:
        raise IdxFormatError("not an IDX file of unsigned bytes (bad magic number)")
    want_ndim = (3, 4) if spec.kind == "images" else (1,)
    if ndim not in want_ndim:
        want = " or ".join(f"{n}-d" for n in want_ndim)
        raise IdxFormatError(f"{ndim}-d IDX data where {spec.kind} need {want}")
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise IdxFormatError("truncated IDX header")
    shape = struct.unpack(f">{ndim}I", payload[4:header])
    size = int(np.prod(shape))
    if len(payload) != header + size:
        raise IdxFormatError(
            f"header promises {size} bytes of data, file holds {len(payload) - header}"
        )
    if spec.kind == "images":
        _check_images(shape, spec)
    if spec.count is not None and shape[0] != spec.count:
        raise IdxFormatError(f"{shape[0]} items, expected {spec.count}")
    array = np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(shape)
    if spec.kind == "labels" and array.size and int(array.max()) >= n_classes:
        raise IdxFormatError(f"label {int(array.max())} out of range for {n_classes} classes")
    if ndim == 4:  # (N, H, W, C) -> (N, C, H, W)
        array = np.ascontiguousarray(array.transpose(0, 3, 1, 2))
    return array


def register_idx(spec: DatasetSpec, module: str) -> None:
    """Register a catalogued IDX dataset: its load function fetches and verifies `spec`'s four
    files (data.source first, then the mirrors) with `exigo.data.download.load_idx`."""
    from exigo.core.registry import DATASETS, NoSettings

    def load(settings: NoSettings, source: str | None, log=print):  # noqa: ANN202
        from exigo.data.download import load_idx

        return load_idx(spec, source, log)

    DATASETS.add(
        spec.name,
        load,
        NoSettings,
        module,
        spec=spec,
        source="optional",
        source_help="a mirror URL, or a folder with the four IDX files (.gz or not)",
    )
