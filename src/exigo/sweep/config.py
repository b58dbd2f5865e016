"""sweep.yaml: the search space, the number of trials, the sampler, the pruner and the objective.

Validated like params.yaml: unknown keys and bad values stop with one line that names the key. The
space's keys must name params that exist in params.yaml; whether a *value* is allowed there is the
trial's business (`dvc exp run` validates params.yaml), so a bad value fails one trial, which the
study records as failed with its reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from exigo.core.errors import ExigoError
from exigo.core.params import PARAMS_FILE, flatten, read_yaml, validate

SWEEP_FILE = Path("sweep.yaml")
# DVC experiment names are git ref names: the study name is their prefix, `<study>-<trial>`.
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*(-[A-Za-z0-9_.]+)*$")
Scalar = str | int | float | bool | None


class SweepError(ExigoError):
    """sweep.yaml is missing, malformed, or does not fit the project or the study."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Section):
    """One param's range: Optuna's float (linear or log), int or categorical distribution."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0)
    log: bool = False
    choices: tuple[Scalar, ...] | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _list_is_categorical(cls, value: Any) -> Any:
        return {"type": "categorical", "choices": value} if isinstance(value, list) else value

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.type == "categorical":
            if self.choices is None:
                raise ValueError("categorical needs choices: a list of values")
            if any(v is not None for v in (self.low, self.high, self.step)) or self.log:
                raise ValueError("categorical takes choices only (no low, high, step or log)")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs low and high")
        if self.choices is not None:
            raise ValueError(f"choices apply to categorical only, not {self.type}")
        if self.low > self.high:
            raise ValueError(f"low must not exceed high (got {self.low:g} > {self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low > 0 (got {self.low:g})")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined (Optuna samples one or the other)")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and value != int(value):
                    raise ValueError(f"int needs whole numbers ({name} = {value:g})")
        return self

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return value in (self.choices or ())
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.low <= value <= self.high  # type: ignore[operator]

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial for this param (a fixed value when the trial was enqueued)."""
        if self.type == "categorical":
            return trial.suggest_categorical(name, list(self.choices or ()))
        if self.type == "int":
            return trial.suggest_int(
                name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class Objective(_Section):
    # A metric DVC tracks: a key of a metrics file (`dvc metrics show`), found in whichever file
    # holds it; `path/to/file.json:key` (DVC's column name) picks one file when several hold it.
    metric: str = "val_acc"  # the train stage's validation accuracy: never the test split
    direction: Literal["maximize", "minimize"] = "maximize"


class Sampler(BaseModel):
    """An Optuna sampler by name; other keys are its constructor's arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal["tpe", "random", "qmc", "gp", "cmaes"] = "tpe"
    seed: int | None = Field(None, ge=0)  # trial k's draws are seeded with seed + k


class Pruner(BaseModel):
    """An Optuna pruner by name; other keys are its constructor's arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal[
        "none", "median", "percentile", "hyperband", "successive_halving", "threshold"
    ] = "median"


class SweepConfig(_Section):
    study: str
    trials: int = Field(ge=1, le=10_000)  # finished + pruned trials, over every worker together
    objective: Objective = Objective()
    space: dict[str, Distribution] = Field(min_length=1)
    sampler: Sampler = Sampler()
    pruner: Pruner = Pruner()
    enqueue: tuple[dict[str, Scalar], ...] = ()  # trials to run first, e.g. today's params
    max_failed: int | None = Field(None, ge=1)  # stop once this many failed (default: trials)

    @field_validator("study")
    @classmethod
    def _study_name(cls, value: str) -> str:
        if not STUDY_NAME.match(value) or ".." in value or value.endswith((".", ".lock")):
            raise ValueError(
                "a study name is letters, digits, '_', '.' and single '-' "
                f"(it prefixes the DVC experiment names) (got {value!r})"
            )
        return value

    @model_validator(mode="after")
    def _check_enqueue(self) -> SweepConfig:
        if len(self.enqueue) > self.trials:
            raise ValueError(
                f"enqueue: {len(self.enqueue)} trials, more than trials: {self.trials}"
            )
        for i, fixed in enumerate(self.enqueue):
            for key, value in fixed.items():
                if key not in self.space:
                    raise ValueError(
                        f"enqueue.{i}.{key}: not in space (enqueue fixes space params)"
                    )
                if not self.space[key].contains(value):
                    raise ValueError(f"enqueue.{i}.{key}: {value!r} is outside its space")
        return self

    @property
    def failure_limit(self) -> int:
        return self.max_failed or self.trials

    def fingerprint(self) -> str:
        """What a study is: two workers with different sweep.yaml must not feed one study."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def load_sweep(path: Path | str = SWEEP_FILE, params_path: Path | str = PARAMS_FILE) -> SweepConfig:
    """Read and validate sweep.yaml; every space key must name a param of params.yaml."""
    cfg = validate(SweepConfig, read_yaml(path, SweepError), str(path), SweepError)
    params = flatten(read_yaml(params_path, SweepError) or {})
    sections = {key.rsplit(".", 1)[0] for key in params}
    for key in cfg.space:
        if key not in params:
            hint = "a section, not one param" if key in sections else "no such param"
            raise SweepError(f"{path}: space.{key}: {hint} in {params_path}")
    return cfg


def override(key: str, value: Any) -> str:
    """`key=value` for `dvc exp run -S`, the value written so DVC reads back the same value."""
    if isinstance(value, str):
        plain = yaml.safe_load(value) == value and re.fullmatch(r"[\w.\-/]+", value)
        text = value if plain else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:  # DVC's override grammar reads 1e-05 as a string
            text = f"{mantissa}.0e{exponent}"
    else:
        text = repr(value)
    return f"{key}={text}"
