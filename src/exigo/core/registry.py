"""One registry per kind of pluggable part: datasets, models, saliency methods, embedding methods.

Each entry is one module in its kind's package, which registers itself with its own settings:

    class Settings(EntrySettings):
        window: PositiveInt = 4

    @SALIENCY_METHODS.register("occlusion", Settings)
    class Occlusion(SaliencyMethod): ...

Everything else that needs the names (params validation and its one-line errors, the params
reference, the tests' parametrisation) reads them from here, so a name is written once. A module
in a kind's package that registers nothing, a name given twice, or a settings model that is not
an `EntrySettings` with a default for every field stops at once with a line naming the module.

Registries fill themselves on first use by importing every module of their package: those
modules must not import torch at the top (the `params` stage checks params.yaml without it).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from exigo.core.errors import ExigoError

T = TypeVar("T")


class RegistryError(ExigoError):
    """A registry entry is missing, given twice or malformed: a contributor's mistake."""


class EntrySettings(BaseModel):
    """The settings one entry takes from its own params section (`model.cnn`, `saliency.smoothgrad`):
    unknown keys are refused, and every field has a default, so an entry runs with none given."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoSettings(EntrySettings):
    """The settings of an entry that takes none."""


@dataclass(frozen=True)
class Entry:
    """One registered dataset, model or method."""

    kind: str  # "model"
    name: str  # "cnn": the value params.yaml names it by
    target: Any  # what the kind's code calls or instantiates with the settings
    settings: type[EntrySettings]
    module: str  # the module that registered it
    meta: dict[str, Any] = field(default_factory=dict)  # kind-specific facts (a dataset's source)

    @property
    def summary(self) -> str:
        """The first paragraph of the entry module's docstring."""
        doc = sys.modules[self.module].__doc__ or ""
        return " ".join(doc.strip().split("\n\n")[0].split()).removeprefix(f"{self.name}: ")

    @property
    def key(self) -> str:
        """The entry's params section key: its name with '-' as '_' (a Python identifier)."""
        return self.name.replace("-", "_")

    def parse(self, raw: Any = None) -> EntrySettings:
        """Settings from a params mapping (None: all defaults)."""
        return self.settings.model_validate(raw or {})


class Registry:
    """The entries of one kind, filled from the modules of `package` on first use."""

    def __init__(
        self, kind: str, key: str, package: str, how: str, requires: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind  # "saliency method"
        self.key = key  # "saliency.methods": the params key that names entries
        self.package = package  # "exigo.explain.methods"
        self.how = how  # what an entry module defines, for the error that finds none
        self.requires = requires  # attributes every entry's target must have
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        self._loading = False

    def register(
        self, name: str, settings: type[EntrySettings] = NoSettings, **meta: Any
    ) -> Callable[[T], T]:
        """Decorate the entry's class or function: registers it under `name`, returns it as is."""

        def add(target: T) -> T:
            self.add(name, target, settings, target.__module__, **meta)
            return target

        return add

    def add(
        self, name: str, target: Any, settings: type[EntrySettings], module: str, **meta: Any
    ) -> Entry:
        """Register an object (a dataset's description, say) under `name`."""
        where = f"{module.replace('.', '/')}.py"
        if not name or not all(c.isalnum() or c in "_-" for c in name) or not name[0].isalpha():
            raise RegistryError(
                f"{where}: {self.kind} name {name!r}: use letters, digits, '_' and '-', "
                "starting with a letter"
            )
        if name in self._entries:
            raise RegistryError(
                f"{where}: {self.kind} '{name}' is already registered by "
                f"{self._entries[name].module}; choose another name"
            )
        _check_settings(settings, f"{where}: {self.kind} '{name}'")
        missing = [a for a in self.requires if not hasattr(target, a)]
        if not callable(target) or missing:
            raise RegistryError(
                f"{where}: {self.kind} '{name}' is not what exigo calls: {self.how}"
                + (f" (it lacks {', '.join(missing)})" if missing else "")
            )
        entry = Entry(self.kind, name, target, settings, module, dict(meta))
        self._entries[name] = entry
        return entry

    def load(self) -> Registry:
        """Import every module of the package once; each must register at least one entry."""
        if self._loaded or self._loading:
            return self
        self._loading = True
        try:
            package = importlib.import_module(self.package)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
                if info.name.startswith("_"):
                    continue
                module = f"{self.package}.{info.name}"
                importlib.import_module(module)
                if not any(e.module == module for e in self._entries.values()):
                    raise RegistryError(
                        f"{module.replace('.', '/')}.py: registers no {self.kind}; {self.how} "
                        "(or name the module with a leading '_' if it is a helper)"
                    )
            self._loaded = True
        finally:
            self._loading = False
        return self

    def names(self) -> tuple[str, ...]:
        """Every registered name, sorted (the same order however the modules were imported)."""
        return tuple(sorted(self.load()._entries))

    def get(self, name: str) -> Entry:
        """The entry named `name`; an unknown name is one line listing the known ones."""
        entries = self.load()._entries
        if name not in entries:
            raise RegistryError(
                f"{self.key}: no {self.kind} named '{name}'; known: {', '.join(entries)}"
            )
        return entries[name]

    def __iter__(self) -> Iterator[Entry]:
        return iter([self._entries[name] for name in self.names()])

    def __contains__(self, name: object) -> bool:
        return name in self.load()._entries

    def with_settings(self) -> list[Entry]:
        """The entries that take settings: each has a params section of its own."""
        return [e for e in self if e.settings.model_fields]


def _check_settings(settings: Any, who: str) -> None:
    if not (isinstance(settings, type) and issubclass(settings, EntrySettings)):
        raise RegistryError(
            f"{who}: settings must be a subclass of exigo.core.registry.EntrySettings "
            f"(got {settings!r})"
        )
    try:
        settings()
    except ValidationError as exc:
        missing = [".".join(map(str, e["loc"])) for e in exc.errors()]
        raise RegistryError(
            f"{who}: its settings model {settings.__name__} needs a default for "
            f"{', '.join(missing)}: an entry must run with no settings given"
        ) from None


DATASETS = Registry(
    "dataset",
    "data.name",
    "exigo.data.sources",
    "register one with @DATASETS.register(name) on its load function",
)
MODELS = Registry(
    "model",
    "model.name",
    "exigo.models.architectures",
    "register one with @MODELS.register(name, Settings) on its build function",
)
SALIENCY_METHODS = Registry(
    "saliency method",
    "saliency.methods",
    "exigo.explain.methods",
    "register one with @SALIENCY_METHODS.register(name, Settings) on its SaliencyMethod class",
    requires=("attribute", "rank_by_magnitude", "seeded", "copies"),
)
PROJECTIONS = Registry(
    "embedding method",
    "embed.method",
    "exigo.embed.methods",
    "register one with @PROJECTIONS.register(name, Settings) on its project function",
)
REGISTRIES = (DATASETS, MODELS, SALIENCY_METHODS, PROJECTIONS)
