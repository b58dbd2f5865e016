"""Typed, validated parameters read from params.yaml.

Every section is a frozen pydantic model with unknown keys forbidden, so a typo or an out-of-range
value stops a stage with one line that names the key and what is allowed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from exigo.core.errors import ExigoError, ParamsError
from exigo.core.fields import Float, Int, PositiveInt
from exigo.core.registry import (
    DATASETS,
    MODELS,
    PROJECTIONS,
    SALIENCY_METHODS,
    EntrySettings,
    NoSettings,
    Registry,
)

PARAMS_FILE = Path("params.yaml")
M = TypeVar("M", bound=BaseModel)
# Keys of earlier params.yaml files that now sit under their entry's name: a one-line hint.
MOVED = {
    "data.classes": "data.idx.classes",
    "data.sha256": "data.idx.sha256",
    "model.channels": "model.cnn.channels",
    "model.hidden": "model.cnn.hidden",
    "model.dropout": "model.cnn.dropout",
    "embed.perplexity": "embed.tsne.perplexity",
    "embed.pca_dims": "embed.tsne.pca_dims",
    "saliency.ig_steps": "saliency.integrated_gradients.steps",
    "saliency.smoothgrad_samples": "saliency.smoothgrad.samples",
    "saliency.smoothgrad_noise": "saliency.smoothgrad.noise",
}

SOURCE_SCHEMES = ("http", "https", "file")  # data.source: a URL of these, or a local folder
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _names(registry: Registry) -> Any:
    """The registry's names as a Literal: pydantic's error and the params reference list them."""
    return Literal[registry.names()]  # type: ignore[valid-type]


# A user's own code, named by import path: "my_pkg.my_data:load", "my_models:Net".
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
TIMM_NAME = re.compile(r"^timm:[A-Za-z0-9_.\-]+$")
ImportPath = Annotated[str, Field(pattern=IMPORT_PATH.pattern)]
TimmName = Annotated[str, Field(pattern=TIMM_NAME.pattern)]


def is_import_path(name: str) -> bool:
    """Whether a data.name or model.name is a user's import path (not a registry name, and
    not timm:<name>)."""
    return bool(IMPORT_PATH.match(name)) and not TIMM_NAME.match(name)


def _entry_or_code(
    registry: Registry, value: Any, forms: dict[str, re.Pattern], example: str
) -> Any:
    """A name of the registry, or one of the other `forms`; anything else is one line."""
    if (
        not isinstance(value, str)
        or value in registry
        or any(f.match(value) for f in forms.values())
    ):
        return value
    raise ValueError(
        f"'{value}' is no {registry.kind} of exigo ({', '.join(registry.names())}) and not "
        f"{' or '.join(forms)} (e.g. {example})"
    )


def _code_covers(key: str, name: str, code: str) -> None:
    """A user's module (data.name or model.name an import path) must lie in the file or folder
    that `code` names: that is what DVC watches, so editing the module re-runs the stage."""
    import importlib.util

    module = name.split(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except Exception as exc:  # noqa: BLE001 - a parent package of the user's that fails to import
        raise ValueError(
            f"name: cannot find module '{module}' ({type(exc).__name__}: {exc})"
        ) from None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        raise ValueError(
            f"name: no module '{module}' (run from the project root, where {module.replace('.', '/')}.py"
            " or its package lies, or install it)"
        )
    origin = Path(spec.origin).resolve()
    watched = Path(code).expanduser().resolve()
    if origin != watched and watched not in origin.parents:
        try:
            shown = origin.relative_to(Path.cwd().resolve())
        except ValueError:
            shown = origin
        raise ValueError(
            f"code: is {code}, which does not hold {shown}, the file of {key} '{name}': set "
            f"{key.split('.')[0]}.code: {shown} (DVC watches it, so editing it re-runs the stage)"
        )


def _with_entries(base: type[M], registry: Registry, **overrides: Any) -> type[M]:
    """`base` plus one section per registry entry that takes settings (model.cnn,
    saliency.smoothgrad): each entry's settings live under its own name, so switching entries
    never applies one entry's settings to another. Sections of entries not chosen are checked
    too, and otherwise unused."""
    fields: dict[str, Any] = dict(overrides)
    for entry in registry.with_settings():
        fields[entry.key] = (
            entry.settings,
            Field(
                default_factory=entry.settings,
                alias=entry.name if entry.name != entry.key else None,
                description=f"{entry.name} only: {entry.summary}",
            ),
        )
    return create_model(base.__name__, __base__=base, __module__=__name__, **fields)


class BaseParams(_Section):
    seed: Int = Field(42, ge=0, le=2**32 - 1)


DATA_CODE = "src/exigo/data/sources"  # data.code's default: the built-in datasets
MODEL_CODE = "src/exigo/models/architectures"


class _DataParams(_Section):
    name: str = "mnist"
    source: str | None = None
    size: (
        tuple[Annotated[int, Field(ge=8, le=4096)], Annotated[int, Field(ge=8, le=4096)]] | None
    ) = Field(None, description="[H, W]: resize every image to this (antialiased)")
    val_size: Float = Field(0.1, gt=0)
    code: str = Field(
        DATA_CODE,
        description="the file or folder of your own loader (data.name an import path): DVC "
        "watches it, so editing it re-runs download",
    )

    @field_validator("name", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        return _entry_or_code(
            DATASETS, value, {"an import path": IMPORT_PATH}, "my_pkg.my_data:load"
        )

    @property
    def settings(self) -> EntrySettings:
        """The chosen dataset's own settings (data.<name>; none for a user's loader)."""
        if is_import_path(self.name):
            return NoSettings()
        return getattr(self, DATASETS.get(self.name).key, NoSettings())

    @model_validator(mode="after")
    def _check(self) -> _DataParams:
        if self.val_size >= 1 and self.val_size != int(self.val_size):
            raise ValueError("val_size: a fraction below 1 or a whole count of images")
        if is_import_path(self.name):
            _code_covers("data.name", self.name, self.code)
            return self
        meta = DATASETS.get(self.name).meta
        if meta.get("source") == "required" and not self.source:
            raise ValueError(f"name: {self.name} needs source: {meta['source_help']}")
        if meta.get("source") == "none" and self.source:
            raise ValueError(
                f"source: {self.name} has none ({meta['source_help']}); set data.source to null,"
                " or data.name to the dataset the source holds"
            )
        scheme = _URL_SCHEME.match(self.source or "")
        if scheme and scheme[1] not in SOURCE_SCHEMES:
            raise ValueError(
                f"source: {scheme[1]}:// is not supported; use an http:// or https:// mirror "
                "URL or a local folder"
            )
        return self


DataParams = _with_entries(_DataParams, DATASETS, name=(_names(DATASETS) | ImportPath, "mnist"))


class _ModelParams(_Section):
    name: str = "cnn"
    args: dict[str, Any] = Field(
        {},
        description="keyword arguments for a timm model or your own class (model.name "
        "timm:<name> or an import path), passed as they are",
    )
    code: str = Field(
        MODEL_CODE,
        description="the file or folder of your own model class (model.name an import path): "
        "DVC watches it, so editing it re-runs train",
    )

    @field_validator("name", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        forms = {"timm:<name>": TIMM_NAME, "an import path": IMPORT_PATH}
        return _entry_or_code(MODELS, value, forms, "timm:resnet18 or my_pkg.my_models:Net")

    @property
    def settings(self) -> EntrySettings:
        """The chosen model's own settings (model.<name>; none for timm's or a user's)."""
        if self.name not in MODELS:
            return NoSettings()
        return getattr(self, MODELS.get(self.name).key, NoSettings())

    @model_validator(mode="after")
    def _check(self) -> _ModelParams:
        if self.args and self.name in MODELS:
            raise ValueError(
                f"args: only for a timm model or your own class; {self.name}'s settings sit "
                f"under model.{MODELS.get(self.name).key}"
            )
        if is_import_path(self.name):
            _code_covers("model.name", self.name, self.code)
        return self


ModelParams = _with_entries(
    _ModelParams, MODELS, name=(_names(MODELS) | TimmName | ImportPath, "cnn")
)


class TrainParams(_Section):
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    epochs: Int = Field(5, ge=1, le=1000)
    batch_size: Int = Field(128, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: Float = Field(3e-3, gt=0, le=10)
    weight_decay: Float = Field(1e-4, ge=0)
    momentum: Float = Field(0.9, ge=0, lt=1)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    monitor: Literal["val_acc", "val_loss"] = "val_acc"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    augment: Literal["none", "crop_flip", "crop_flip_cutout"] = "none"
    label_smoothing: Float = Field(0.0, ge=0, lt=1)
    nproc: Int = Field(1, ge=1, le=64)
    monitor_system: bool = False

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if self.batch_size < self.nproc:  # each process takes batch_size / nproc images a step
            raise ValueError(
                f"batch_size {self.batch_size} is below nproc {self.nproc}: each of the "
                f"{self.nproc} processes needs at least one image of every batch; raise "
                "train.batch_size or lower train.nproc"
            )
        return self


class EvaluateParams(_Section):
    batch_size: Int = Field(1000, ge=1)
    n_mistakes: Int = Field(24, ge=0, le=400)
    n_confused: Int = Field(5, ge=1, le=1000)


class _EmbedParams(_Section):
    n_points: Int | None = Field(None, ge=20)
    method: str = "tsne"
    neighbors: Int = Field(10, ge=1, le=100)
    folds: Int = Field(5, ge=2, le=20)
    batch_size: Int = Field(1000, ge=1)

    @property
    def settings(self) -> EntrySettings:
        """The chosen projection's own settings (embed.<method>)."""
        return getattr(self, PROJECTIONS.get(self.method).key, NoSettings())


EmbedParams = _with_entries(_EmbedParams, PROJECTIONS, method=(_names(PROJECTIONS), "tsne"))


DEFAULT_METHODS = ("gradient", "integrated_gradients", "smoothgrad", "gradcam")


class _SaliencyParams(_Section):
    n_images: Int = Field(10, ge=1, le=40)
    target: Literal["true", "predicted"] = "true"
    methods: tuple[str, ...] = DEFAULT_METHODS  # the registry's names: see SaliencyParams
    n_eval: PositiveInt = 1000
    n_randomization: Int = Field(50, ge=2)
    deletion_steps: Int = Field(10, ge=2, le=100)
    batch_size: PositiveInt = 256
    n_pairs: Int = Field(3, ge=0, le=20)
    flag_correlation: Float = Field(0.5, ge=-1, le=1)

    @field_validator("target", mode="before")
    @classmethod
    def _yaml_true(cls, value: Any) -> Any:
        return "true" if value is True else value  # YAML reads a bare `true` as a boolean

    def settings_of(self, method: str) -> EntrySettings:
        """A method's own settings (saliency.<method>)."""
        return getattr(self, SALIENCY_METHODS.get(method).key, NoSettings())

    @model_validator(mode="after")
    def _check(self) -> _SaliencyParams:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: each method once (got {', '.join(self.methods)})")
        return self


SaliencyParams = _with_entries(
    _SaliencyParams,
    SALIENCY_METHODS,
    methods=(
        Annotated[tuple[_names(SALIENCY_METHODS), ...], Field(min_length=1)],
        DEFAULT_METHODS,
    ),
)


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
        if key in MOVED and source.endswith("params.yaml"):
            return f"{key}: moved to {MOVED[key]} (each entry's own settings sit under its name)"
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


def validate(model: type[M], raw: Any, source: str, error: type[ExigoError] = ParamsError) -> M:
    """Validate a YAML mapping against a model; raise `error` with one line per bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise error(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A list whose every item was refused is also "too short after validation": noise.
        items = {tuple(e["loc"][:-1]) for e in errors if len(e["loc"]) > 1}
        errors = [e for e in errors if not (e["type"] == "too_short" and e["loc"] in items)]
        lines = [_describe(e, raw, model, source) for e in errors]
        raise error(f"{source}: " + f"\n  {source}: ".join(lines)) from None


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise ParamsError naming every bad key."""
    return validate(Params, raw, source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error (PyYAML keeps
    the last value silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key '{key}' (first given on line {seen[key].line + 1});"
                    " keep one",
                    problem_mark=key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def read_yaml(path: Path | str, error: type[ExigoError] = ParamsError) -> Any:
    """A YAML file the user wrote; missing or broken becomes one clear error."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise error(f"{path}: not found (run from the project root)") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(exc.problem or exc.context or "unreadable").split())
        raise error(f"{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; an empty file is an error, not all defaults."""
    raw = read_yaml(path)
    if raw is None:
        raise ParamsError(
            f"{path}: empty; it holds the pipeline's settings (sections "
            f"{', '.join(Params.model_fields)}): restore it with git checkout {path}"
        )
    return parse_params(raw, str(path))


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask, which taskset or a container's
    CPU set narrows), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_nproc(nproc: int, limit: int, per: str) -> None:
    """Refuse more train processes than this machine runs side by side (`per`: what each needs)."""
    if nproc > limit:
        raise ParamsError(
            f"params.yaml: train.nproc: at most {limit} on this machine, one process per {per} "
            f"(got {nproc})"
        )


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
