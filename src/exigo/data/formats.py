"""Readers of image datasets in the formats they are published in, beyond IDX: CIFAR's pickled
batches in a tar.gz, SVHN's MATLAB files, and a folder of class subfolders of images.

Each reader returns `Images`: uint8 arrays (N, C, H, W) with C = 1 or 3, int64 labels, and the
class names. Nothing here downloads or verifies checksums (the download code does that before a
reader sees a file); what a reader refuses is a file whose content is not what the format says,
each as one line naming the file.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exigo.core.errors import ExigoError
from exigo.data.raw import MIN_SIDE  # the smallest image side exigo works with

FOLDER_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Images:
    """One split: images (N, C, H, W) uint8, labels (N,) int64, and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        n, c = self.images.shape[:2]
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or c not in (1, 3):
            raise ValueError(f"images must be uint8 (N, 1|3, H, W), got {self.images.shape}")
        if self.labels.shape != (n,):
            raise ValueError(f"{n} images but labels of shape {self.labels.shape}")


# --- CIFAR: pickled dicts of numpy arrays, inside a tar.gz ----------------------------------------
# The batches are Python 2 pickles. Unpickling can run code, so only what a numpy array needs to
# be rebuilt is allowed; anything else in the file is refused, not executed.
_NUMPY = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2 (as torch's safe load allows)
}


class _NumpyOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY:
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        if module == "_codecs":
            import codecs

            return codecs.encode
        try:
            import numpy._core.multiarray as multiarray  # numpy 2
        except ImportError:  # pragma: no cover - numpy 1
            import numpy.core.multiarray as multiarray

        if name in ("_reconstruct", "scalar"):
            return getattr(multiarray, name)
        return getattr(np, name)


def load_pickle(data: bytes, what: str) -> dict:
    """A CIFAR batch: a dict with bytes keys. Anything but numpy arrays, lists, numbers and
    strings inside is refused (it would run code)."""
    try:
        batch = _NumpyOnly(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise ExigoError(
            f"{what}: not a CIFAR batch ({exc}: unsafe content refused, it would run code)"
        ) from None
    except Exception as exc:  # truncated or not a pickle at all
        raise ExigoError(f"{what}: not a CIFAR batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise ExigoError(f"{what}: not a CIFAR batch (a {type(batch).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


@dataclass(frozen=True)
class CifarLayout:
    folder: str  # the folder inside the archive
    train: tuple[str, ...]
    test: str
    meta: str
    labels_key: str
    names_key: str


CIFAR10 = CifarLayout(
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    "batches.meta",
    "labels",
    "label_names",
)
CIFAR100 = CifarLayout(
    "cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names"
)


def _members(archive: Path, folder: str) -> dict[str, bytes]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            found = {}
            for member in tar.getmembers():
                parent, _, name = member.name.rpartition("/")
                if member.isfile() and parent == folder:
                    found[name] = tar.extractfile(member).read()
            return found
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ExigoError(f"{archive}: not a readable tar.gz ({exc})") from None


def read_cifar(archive: Path, layout: CifarLayout) -> dict[str, Images]:
    """{'train': ..., 'test': ...} from CIFAR-10's or CIFAR-100's python archive."""
    files = _members(archive, layout.folder)
    needed = [*layout.train, layout.test, layout.meta]
    if missing := [n for n in needed if n not in files]:
        raise ExigoError(
            f"{archive}: no {layout.folder}/{missing[0]} inside; expected the official "
            f"'python version' archive ({', '.join(needed)})"
        )
    meta = load_pickle(files[layout.meta], f"{archive}:{layout.meta}")
    names = meta.get(layout.names_key)
    if not isinstance(names, list) or not names:
        raise ExigoError(f"{archive}:{layout.meta}: no {layout.names_key} list")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)

    def split(members: Iterable[str]) -> Images:
        images, labels = [], []
        for name in members:
            what = f"{archive}:{layout.folder}/{name}"
            batch = load_pickle(files[name], what)
            data, y = batch.get("data"), batch.get(layout.labels_key)
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
                raise ExigoError(f"{what}: 'data' is not a uint8 array of rows")
            if data.shape[1] != 3 * 32 * 32 or y is None or len(y) != len(data):
                raise ExigoError(
                    f"{what}: expected rows of 3,072 bytes (3x32x32) and a label each, "
                    f"got {data.shape} and {0 if y is None else len(y)} labels"
                )
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(np.asarray(y, dtype=np.int64))
        out = Images(np.concatenate(images), np.concatenate(labels), classes)
        _check_labels(out, str(archive))
        return out

    return {"train": split(layout.train), "test": split([layout.test])}


# --- SVHN: MATLAB v5 files, X (32, 32, 3, N) and y (N, 1) with 10 for the digit 0 --------------------
SVHN_CLASSES = tuple(str(d) for d in range(10))


def read_svhn(path: Path) -> Images:
    """One SVHN split (`train_32x32.mat` or `test_32x32.mat`); label 10 is the digit 0."""
    from scipy.io import loadmat  # scipy comes with scikit-learn

    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except Exception as exc:  # scipy raises many kinds for a file that is not MATLAB v5
        raise ExigoError(
            f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})"
        ) from None
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        shape = None if x is None else x.shape
        raise ExigoError(f"{path}: expected X of uint8 (32, 32, 3, N) and y, got X {shape}")
    labels = np.asarray(y, dtype=np.int64).reshape(-1)
    if len(labels) != x.shape[3]:
        raise ExigoError(f"{path}: {x.shape[3]} images but {len(labels)} labels")
    labels = np.where(labels == 10, 0, labels)
    out = Images(np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels, SVHN_CLASSES)
    _check_labels(out, str(path))
    return out


# --- A folder of class subfolders --------------------------------------------------------------------
def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _open(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as (H, W, 3) uint8, resized (antialiased) to size = (H, W) if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # a truncated file fails here, not later
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ExigoError(f"{path}: not a readable image ({exc})") from None
    if size is not None and rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8)


def read_folder(root: Path, size: tuple[int, int] | None = None) -> dict[str, Images]:
    """`root/<class>/<image>`, or `root/train/<class>/...` with `test/` (and `val/`) beside it with
    the same classes. Class names are the folder names (sorted). All grey images give C = 1, any
    colour C = 3. Without `size`, every image must have the same size."""
    if not root.is_dir():
        raise ExigoError(f"data.source: {root} is not a folder of class subfolders")
    top = _class_folders(root)
    split_names = [p.name for p in top if p.name in FOLDER_SPLITS]
    if split_names and "train" not in split_names:
        raise ExigoError(f"{root}: has {', '.join(split_names)}/ but no train/ beside it")
    # train first: its classes are the classes, and another split may not add one
    layout = {s: root / s for s in FOLDER_SPLITS if s in split_names} or {"train": root}
    classes: tuple[str, ...] | None = None
    files: dict[str, list[tuple[Path, int]]] = {}
    for split, folder in layout.items():
        folders = _class_folders(folder)
        if not folders:
            raise ExigoError(f"{folder}: no class subfolders (expected {folder}/<class>/<image>)")
        names = tuple(p.name for p in folders)
        if classes is None:
            if len(names) < 2:
                raise ExigoError(
                    f"{folder}: one class ({names[0]}); a classifier needs two or more"
                )
            classes = names
        elif extra := sorted(set(names) - set(classes)):
            raise ExigoError(f"{folder}: class '{extra[0]}' is not in {layout['train']}")
        files[split] = []
        for class_folder in folders:
            images = _images_in(class_folder)
            if not images:
                raise ExigoError(f"{class_folder}: no images in class '{class_folder.name}'")
            files[split] += [(p, classes.index(class_folder.name)) for p in images]
    assert classes is not None
    arrays = {s: [_open(p, size) for p, _ in entries] for s, entries in files.items()}
    first: tuple[Path, tuple[int, ...]] | None = None
    for split, entries in files.items():
        for (path, _), array in zip(entries, arrays[split], strict=True):
            if first is None:
                first = (path, array.shape)
            elif array.shape != first[1]:
                raise ExigoError(
                    f"{path} is {array.shape[1]}x{array.shape[0]} but {first[0]} is "
                    f"{first[1][1]}x{first[1][0]}: set data.size: [H, W] to resize them all"
                )
    assert first is not None
    h, w = first[1][:2]
    if min(h, w) < MIN_SIDE:
        raise ExigoError(f"{first[0]}: {w}x{h} images; at least {MIN_SIDE}x{MIN_SIDE} (data.size)")
    stacked = {s: np.stack(a).transpose(0, 3, 1, 2) for s, a in arrays.items()}  # (N, 3, H, W)
    grey = all(
        bool((a[:, 0] == a[:, 1]).all() and (a[:, 1] == a[:, 2]).all()) for a in stacked.values()
    )
    return {
        split: Images(
            np.ascontiguousarray(a[:, :1] if grey else a),
            np.array([label for _, label in files[split]], dtype=np.int64),
            classes,
        )
        for split, a in stacked.items()
    }


def folder_digest(root: Path) -> str:
    """sha256 over every file under `root` (relative path and content, in sorted order): what a
    folder of images held when it was read, to notice a change in place later."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def check_tree(source: str | None, recorded: dict | None, data_dir: Path) -> None:
    """Stop when the local folder a dataset was read from whole (data.name folder) no longer
    holds what `download` read; a folder not on this machine (data from DVC) is not checked."""
    if not source or not recorded:
        return
    root = Path(source).expanduser()
    if not root.is_dir() or folder_digest(root) == recorded.get("sha256"):
        return
    raise ExigoError(
        f"data.source: {root} changed since {data_dir}/ was built from it; run dvc repro -f "
        "download to read it again, then run again"
    )


def resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, C, H, W) resized to size = (H, W), antialiased (Pillow's Lanczos, per image)."""
    from PIL import Image

    n, c, h, w = images.shape
    if (h, w) == tuple(size):
        return images
    out = np.empty((n, c, *size), dtype=np.uint8)
    for i, img in enumerate(images):
        if c == 1:
            pil = Image.fromarray(img[0], mode="L")
        else:
            pil = Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0)), mode="RGB")
        arr = np.asarray(pil.resize((size[1], size[0]), Image.Resampling.LANCZOS))
        out[i] = arr[None] if c == 1 else arr.transpose(2, 0, 1)
    return out


def _check_labels(images: Images, what: str) -> None:
    bad = (images.labels < 0) | (images.labels >= len(images.classes))
    if bad.any():
        raise ExigoError(
            f"{what}: label {int(images.labels[bad][0])} outside 0..{len(images.classes) - 1}"
        )
