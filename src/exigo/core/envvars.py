"""The EXIGO_* environment variables, parsed and checked in one place.

Like params.yaml: a value of the wrong kind or an unknown EXIGO_* name (a typo) stops with one
line that names the variable and what is allowed. An empty value counts as unset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exigo.core.errors import ExigoError

PREFIX = "EXIGO_"
_NAME = r"^[\w.-]*[\w-][\w.-]*$"  # letters, digits, '.', '_', '-'; not only dots


class EnvError(ExigoError):
    """An EXIGO_* environment variable holds a value exigo cannot use."""


class Env(BaseModel):
    """Every EXIGO_* variable exigo reads; the description is what the error line says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    EXIGO_CACHE_DIR: str | None = Field(None, description="the download cache's folder")
    EXIGO_DOWNLOAD_DEADLINE: float = Field(
        600.0, gt=0, allow_inf_nan=False,
        description="seconds each dataset file may take to download: a number above 0 (unset: 600)",
    )  # fmt: skip
    EXIGO_MLFLOW_LOCK_TIMEOUT: float = Field(
        600.0, ge=0, allow_inf_nan=False,
        description="seconds the track stage waits for another process logging to the same "
        "MLflow store: a number, 0 or more (unset: 600)",
    )  # fmt: skip
    EXIGO_REGISTERED_MODEL: str | None = Field(
        None, pattern=_NAME,
        description="the MLflow registered model's name: letters, digits, '.', '_' and '-' "
        "only (unset: the MLflow experiment's name)",
    )  # fmt: skip
    EXIGO_SWEEP_STUDY: str | None = Field(None, description="set by `exigo sweep`: the study")
    EXIGO_SWEEP_TRIAL: int | None = Field(
        None, ge=0, description="set by `exigo sweep`: the trial's number, a whole number 0 or more"
    )
    EXIGO_REQUIRE_BROWSER: bool = Field(
        False, description="tests: a missing Chromium fails the browser tests: 1 or 0"
    )


def read_env(environ: Mapping[str, str] | None = None) -> Env:
    """The EXIGO_* variables of `environ` (default: this process's), validated."""
    environ = os.environ if environ is None else environ
    raw = {k: v for k, v in environ.items() if k.startswith(PREFIX) and v != ""}
    try:
        return Env.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = str(err["loc"][0])
        if err["type"] == "extra_forbidden":
            known = ", ".join(Env.model_fields)
            raise EnvError(
                f"{name}: not a variable exigo reads (a typo?); it reads: {known}"
            ) from None
        allowed = Env.model_fields[name].description
        raise EnvError(f"{name}: {allowed} (got {raw[name]!r})") from None
