"""idx: your own dataset as the four standard IDX files, from data.source: images of any size from
8x8 up, grey (a 3-d file, N x H x W) or colour (a 4-d file, N x H x W x C, channels last, C = 3).

Give the class names (default "0".."9") and, to verify the files exactly, the sha256 of each
decompressed file; without them the files are accepted on their IDX structure. The files keep the
standard names (train-images-idx3-ubyte.gz ...; a folder may hold them uncompressed, and a 4-d
image file may say idx4 where the name says idx3).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field, field_validator

from exigo.core.registry import DATASETS, EntrySettings
from exigo.data.idx import SPLIT_FILES, DatasetSpec, IdxFile
from exigo.data.raw import RawDataset


class IdxSettings(EntrySettings):
    classes: tuple[str, ...] | None = Field(
        None, min_length=2, description='class names, in label order (default "0".."9")'
    )
    sha256: dict[str, str] | None = Field(
        None, description="{file.gz: sha256 of the decompressed IDX} to verify the files against"
    )

    @field_validator("sha256")
    @classmethod
    def _known_files(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        unknown = set(value or {}) - set(SPLIT_FILES.values())
        if unknown:
            raise ValueError(
                f"unknown file(s) {sorted(unknown)}; allowed: {', '.join(SPLIT_FILES.values())}"
            )
        return value


def spec(settings: IdxSettings) -> DatasetSpec:
    """The four files, checked against the sha256 given (structure only without)."""
    sha256 = settings.sha256 or {}
    files = tuple(
        IdxFile(fname, split, kind, sha256=sha256.get(fname))
        for (split, kind), fname in SPLIT_FILES.items()
    )
    classes = settings.classes or tuple(str(d) for d in range(10))
    return DatasetSpec(name="idx", classes=classes, files=files)


@DATASETS.register(
    "idx",
    IdxSettings,
    source="required",
    source_help="a mirror URL, or a folder with the four IDX files (.gz or not)",
)
def load(
    settings: IdxSettings, source: str | None, log: Callable[[str], None] = print
) -> RawDataset:
    """The four files from data.source, verified as far as the settings allow."""
    from exigo.data.download import load_idx

    return load_idx(spec(settings), source, log)
