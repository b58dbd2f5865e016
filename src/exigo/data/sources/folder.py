"""folder: your own images, a folder of class subfolders (`<class>/<image>`), from data.source.

Any format Pillow reads. Optionally split into `train/` and `test/` (and `val/`) with the same
classes; class names are the folder names, sorted. All-grey images give one channel, any colour
gives RGB. Images of different sizes need `data.size: [H, W]` (resized, antialiased). Without
`test/`, a stratified `test_size` of the images is the test split, the same for every base.seed.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field

from exigo.core.fields import Float
from exigo.core.registry import DATASETS, EntrySettings
from exigo.data.raw import RawDataset

TEST_SEED = 0  # fixed on purpose: the test split never moves with base.seed


class FolderSettings(EntrySettings):
    test_size: Float = Field(
        0.2, gt=0, description="without test/: the test split, a fraction (<1) or a count"
    )


@DATASETS.register(
    "folder",
    FolderSettings,
    source="required",
    source_help="a folder of class subfolders of images (or of train/, test/ and val/)",
)
def load(
    settings: FolderSettings,
    source: str | None,
    log: Callable[[str], None] = print,
    size: tuple[int, int] | None = None,
) -> RawDataset:
    """Every image under data.source, resized to `size` if given; a test split carved when the
    folder has no test/."""
    from pathlib import Path

    from exigo.data.formats import folder_digest, read_folder
    from exigo.data.splits import stratified_split

    root = Path(source).expanduser()
    splits = read_folder(root, size)
    tree = {"path": str(root), "sha256": folder_digest(root)}
    train = splits["train"]
    n = {k: len(v.labels) for k, v in splits.items()}
    log(
        f"folder: {root}: {', '.join(f'{k} {v:,}' for k, v in n.items())} images of "
        f"{len(train.classes)} classes, {train.images.shape[1]}x{train.images.shape[2]}"
        f"x{train.images.shape[3]} (C x H x W)"
    )
    val = splits.get("val")
    extra = {"val_images": val.images, "val_labels": val.labels} if val else {}
    if "test" in splits:
        test = splits["test"]
        return RawDataset(
            train.images, train.labels, test.images, test.labels, train.classes, tree=tree, **extra
        )
    size_ = settings.test_size
    keep, held = stratified_split(
        train.labels, int(size_) if size_ >= 1 else size_, TEST_SEED, "data.folder.test_size"
    )
    return RawDataset(
        train.images[keep],
        train.labels[keep],
        train.images[held],
        train.labels[held],
        train.classes,
        tree=tree,
        **extra,
    )
