"""`exigo set KEY=VALUE ...`: change params.yaml the way `dvc exp run -S` does (DVC's own
override parser and YAML writer, so the file keeps DVC's form), without running anything, and
only if the result is valid params: a typo or a value out of range changes nothing."""

from __future__ import annotations

import contextlib
from pathlib import Path

from exigo.core.errors import ExigoError, ParamsError
from exigo.core.params import load_params


def set_params(path: Path, overrides: list[str]) -> None:
    """Apply `key=value` overrides to params.yaml; on any error the file is left as it was."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    try:
        before = path.read_bytes()
    except OSError as exc:
        raise ExigoError(f"{path}: {exc.strerror or exc} (run from the project root)") from None
    try:
        apply_overrides(path, list(overrides))
        load_params(path)
    except InvalidArgumentError as exc:
        path.write_bytes(before)
        text = str(exc.__cause__ or exc).strip()
        unknown = "not in struct" in str(getattr(exc.__cause__, "__cause__", ""))
        why = "no such key in params.yaml" if unknown else text.splitlines()[0]
        raise ExigoError(f"exigo set {' '.join(overrides)}: {why}; nothing changed") from None
    except ParamsError as exc:
        path.write_bytes(before)
        raise ParamsError(f"{exc}; nothing changed") from None
    except OSError as exc:  # a read-only or full disk while DVC rewrote the file
        with contextlib.suppress(OSError):
            path.write_bytes(before)
        raise ExigoError(f"{path}: cannot write it ({exc.strerror or exc})") from None
