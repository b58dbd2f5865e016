"""Typed, validated parameters read from params.yaml.

Every section is a frozen pydantic model with unknown keys forbidden, so a typo or an out-of-range
value stops a stage with one line that names the key and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from exigo.errors import ExigoError, ParamsError

PARAMS_FILE = Path("params.yaml")

DatasetName = Literal["mnist", "fashion-mnist", "kmnist", "mnist-sample", "idx"]
PositiveInt = Annotated[int, Field(ge=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(_Section):
    seed: int = Field(42, ge=0, le=2**32 - 1)


class DataParams(_Section):
    name: DatasetName = "mnist"
    source: str | None = None
    val_size: float = Field(0.1, gt=0)
    classes: tuple[str, ...] | None = None
    sha256: dict[str, str] | None = None

    @model_validator(mode="after")
    def _check(self) -> DataParams:
        if self.val_size >= 1 and self.val_size != int(self.val_size):
            raise ValueError("val_size: a fraction below 1 or a whole count of images")
        if self.name != "idx" and (self.classes is not None or self.sha256 is not None):
            raise ValueError(
                "classes and sha256 apply to name: idx only (the built-in datasets know theirs)"
            )
        if self.name == "idx" and not self.source:
            raise ValueError(
                "name: idx needs source: a mirror URL or a folder with the four .gz IDX files"
            )
        if self.classes is not None and len(self.classes) < 2:
            raise ValueError("classes: at least two class names")
        return self


class ModelParams(_Section):
    name: Literal["cnn", "basic_cnn"] = "cnn"
    channels: tuple[PositiveInt, PositiveInt] = (32, 64)
    hidden: PositiveInt = 128
    dropout: float = Field(0.25, ge=0, lt=1)


class TrainParams(_Section):
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    epochs: int = Field(5, ge=1, le=1000)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(3e-3, gt=0, le=10)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    monitor: Literal["val_acc", "val_loss"] = "val_acc"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    nproc: int = Field(1, ge=1, le=64)
    monitor_system: bool = False


class EvaluateParams(_Section):
    batch_size: int = Field(1000, ge=1)
    n_mistakes: int = Field(24, ge=0, le=400)
    n_confused: int = Field(5, ge=1, le=90)


class EmbedParams(_Section):
    n_points: int | None = Field(None, ge=20)
    method: Literal["tsne", "pca"] = "tsne"
    perplexity: float = Field(30.0, ge=2, le=100)
    pca_dims: int = Field(50, ge=2)
    neighbors: int = Field(10, ge=1, le=100)
    folds: int = Field(5, ge=2, le=20)
    batch_size: int = Field(1000, ge=1)


SaliencyMethod = Literal["gradient", "integrated_gradients", "smoothgrad", "gradcam"]


class SaliencyParams(_Section):
    n_images: int = Field(10, ge=1, le=40)
    target: Literal["true", "predicted"] = "true"
    methods: tuple[SaliencyMethod, ...] = Field(
        ("gradient", "integrated_gradients", "smoothgrad", "gradcam"), min_length=1
    )
    n_eval: PositiveInt = 1000
    n_randomization: int = Field(50, ge=2)
    ig_steps: int = Field(8, ge=2, le=1000)
    smoothgrad_samples: int = Field(8, ge=1, le=1000)
    smoothgrad_noise: float = Field(0.15, gt=0, le=1)
    deletion_steps: int = Field(10, ge=2, le=28)
    batch_size: PositiveInt = 256
    n_pairs: int = Field(3, ge=0, le=20)
    flag_correlation: float = Field(0.5, ge=-1, le=1)

    @field_validator("target", mode="before")
    @classmethod
    def _yaml_true(cls, value: Any) -> Any:
        return "true" if value is True else value  # YAML reads a bare `true` as a boolean

    @model_validator(mode="after")
    def _check(self) -> SaliencyParams:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: each method once (got {', '.join(self.methods)})")
        return self


class Params(_Section):
    base: BaseParams = BaseParams()
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    embed: EmbedParams = EmbedParams()
    saliency: SaliencyParams = SaliencyParams()


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    """The pydantic model that holds the keys at `loc` (None where a mapping holds free keys)."""
    node: Any = root
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel) and part in node.model_fields:
            node = _unwrap(node.model_fields[part].annotation)
        elif get_origin(node) is dict:
            node = _unwrap(get_args(node)[1])
        else:
            return None
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """A model or a dict type inside Optional[...] / Annotated[...] / a union, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is dict:
        return annotation
    for arg in get_args(annotation):
        if (found := _unwrap(arg)) is not None:
            return found
    return None


def _describe(err: dict[str, Any], raw: dict[str, Any], root: type[BaseModel], source: str) -> str:
    """One line for one pydantic error: the dotted key, what is allowed, what was given."""
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        section = _model_at(root, loc[:-1])
        allowed = ", ".join(section.model_fields) if section else "(see the documentation)"
        where = f"section '{'.'.join(loc[:-1])}'" if len(loc) > 1 else Path(source).name
        return f"{key}: unknown key; {where} allows: {allowed}"
    if err["type"] == "missing":
        if loc and loc[-1].isdigit():  # a tuple given too few values
            return (
                f"{'.'.join(loc[:-1])}: expected more values (got {len(_get(raw, loc[:-1]) or [])})"
            )
        return f"{key}: required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":  # a cross-field check: its message names the keys itself
        return f"{key}: {msg}"
    return f"{key}: {msg[0].lower() + msg[1:]} (got {err['input']!r})"


def _get(tree: Any, loc: list[str]) -> Any:
    for part in loc:
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], raw: Any, source: str, error: type[ExigoError] = ParamsError) -> M:
    """Validate a YAML mapping against a model; raise `error` with one line per bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise error(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, raw, model, source) for e in exc.errors(include_url=False)]
        raise error(f"{source}: " + f"\n  {source}: ".join(lines)) from None


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise ParamsError naming every bad key."""
    return validate(Params, raw, source)


def read_yaml(path: Path | str, error: type[ExigoError] = ParamsError) -> Any:
    """A YAML file the user wrote; missing or broken becomes one clear error."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: not found (run from the project root)") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    return parse_params(read_yaml(path), str(path))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: the dotted keys DVC and MLflow show."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
