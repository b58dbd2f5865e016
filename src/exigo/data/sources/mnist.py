"""MNIST: 70,000 handwritten digits 0-9, 28x28 grey (LeCun et al. 1998).

Mirrors and archive md5s as torchvision publishes them (tests/test_download.py checks that they
agree), tried in order; also the sha256 of each decompressed file (computed from a full copy whose
decompressed md5s match the published ones), so a recompressed or uncompressed copy is verified
exactly too.
"""

from __future__ import annotations

from exigo.data.idx import DatasetSpec, idx_files, register_idx

SPEC = DatasetSpec(
    name="mnist",
    classes=tuple(str(d) for d in range(10)),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    files=idx_files(
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
)


register_idx(SPEC, __name__)
