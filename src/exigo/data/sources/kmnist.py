"""Kuzushiji-MNIST: 70,000 cursive Japanese characters in 10 classes, 28x28 grey (Clanuwat et al. 2018).

Mirror and archive md5s as torchvision publishes them (tests/test_download.py checks that they
agree).
"""

from __future__ import annotations

from exigo.data.idx import DatasetSpec, idx_files, register_idx

SPEC = DatasetSpec(
    name="kmnist",
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    files=idx_files(
        (
            "bdb82020997e1d708af4cf47b453dcf7",
            "e144d726b3acfaa3e44228e80efcd344",
            "5c965bf0a639b31b8f53240b1b52f4d7",
            "7320c461ea6c1c855c0b718fb2a4b134",
        ),
        60_000,
        10_000,
    ),
)


register_idx(SPEC, __name__)
