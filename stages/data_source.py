"""Fingerprint a local `data.source` folder, so that DVC re-runs `download` when its files change.

python -m stages.data_source    # reads params.yaml (data.source), writes .exigo/data_source.json

DVC cannot hash a folder named by a param that may be null or a URL, so this stage records the
sha256 of every file there that `download` may read; `download` depends on the record. It is
`always_changed` in dvc.yaml: it runs on every `dvc repro`, in under a second and without torch,
and an unchanged record changes nothing downstream.
"""

from __future__ import annotations

from pathlib import Path

from exigo.download import source_fingerprint
from exigo.errors import run_stage
from exigo.io import write_json
from exigo.params import load_params

RECORD = Path(".exigo/data_source.json")


def main() -> None:
    write_json(RECORD, source_fingerprint(load_params().data.source))


if __name__ == "__main__":
    run_stage(main)
