"""Check params.yaml before any other stage runs, so that a bad value costs nothing.

python -m stages.params     # reads params.yaml and the EXIGO_* variables, writes .exigo/params.ok

DVC removes a stage's outputs just before it runs the stage, so a bad param that `train` itself
found cost the workspace its model and metrics. Every stage that reads params depends on this
one: a bad value stops `dvc repro` / `dvc exp run` here, before anything is removed. Its output is
the same line every time, so a params change still re-runs only the stages that read that param.
"""

from __future__ import annotations

from pathlib import Path

from exigo.core.envvars import read_env
from exigo.core.errors import run_stage
from exigo.core.outputs import write_bytes
from exigo.core.params import check_nproc, load_params, usable_cpus

MARKER = Path(".exigo/params.ok")
CONTENT = b"params.yaml passed stages/params.py\n"  # constant: the stages after it never re-run


def main() -> None:
    params = load_params()  # every section, as the stages will read it
    # Every process needs a core of its own on any device (CUDA's GPU count: `train` checks it).
    check_nproc(params.train.nproc, usable_cpus(), "CPU core this process may use")
    read_env()
    write_bytes(MARKER, CONTENT)


if __name__ == "__main__":
    run_stage(main)
