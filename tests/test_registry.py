"""The registries: every dataset, model and method is one module, and a mistake in one is a clear
line naming it, never a silent omission."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

from exigo.core.params import Params, load_params
from exigo.core.registry import (
    DATASETS,
    MODELS,
    REGISTRIES,
    SALIENCY_METHODS,
    EntrySettings,
    Registry,
    RegistryError,
)


def test_every_registry_loads_without_torch_or_numpy():
    """The params stage reads the registries: their modules import torch and numpy inside their
    functions only, so checking params.yaml stays a fraction of a second."""
    code = (
        "import sys\n"
        "from exigo.core.registry import REGISTRIES\n"
        "import exigo.core.params\n"
        "print({r.kind: len(r.names()) for r in REGISTRIES})\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert all(n > 0 for n in eval(result.stdout).values())  # noqa: S307 (our own dict)


def test_every_module_of_a_registry_package_registers_an_entry():
    for registry in REGISTRIES:
        folder = ROOT / "src" / registry.package.replace(".", "/")
        modules = {p.stem for p in folder.glob("*.py") if not p.name.startswith("_")}
        assert modules == {e.module.rsplit(".", 1)[1] for e in registry}, registry.kind


def test_params_sections_follow_the_registries():
    """Each entry with settings has a section named after it, defaulting to its settings'
    defaults; params.yaml's own sections are those defaults."""
    params = Params()
    for registry, section in zip(REGISTRIES, ("data", "model", "saliency", "embed"), strict=True):
        fields = type(getattr(params, section)).model_fields
        for entry in registry.with_settings():
            assert entry.key in fields, f"{section}.{entry.name}"
            assert getattr(getattr(params, section), entry.key) == entry.settings()
    assert load_params(ROOT / "params.yaml") == params


def test_switching_the_model_never_applies_another_models_settings():
    params = Params.model_validate({"model": {"name": "basic_cnn", "cnn": {"hidden": 7}}})
    assert params.model.settings == MODELS.get("basic_cnn").settings()
    assert Params.model_validate({"model": {"cnn": {"hidden": 7}}}).model.settings.hidden == 7


@pytest.fixture
def package(tmp_path, monkeypatch):
    """An empty package `fake_entries` on sys.path, and a registry over it."""
    root = tmp_path / "fake_entries"
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("widget", "widget.name", "fake_entries", "decorate it with @WIDGETS")
    import exigo.core.registry as registry_module

    monkeypatch.setattr(registry_module, "WIDGETS", registry, raising=False)
    yield root, registry
    for name in [m for m in sys.modules if m.startswith("fake_entries")]:
        del sys.modules[name]


def _module(root, name, body):
    (root / f"{name}.py").write_text(
        "from exigo.core.registry import WIDGETS, EntrySettings\n" + textwrap.dedent(body)
    )


def test_a_module_that_registers_nothing_is_named(package):
    root, registry = package
    _module(root, "good", "@WIDGETS.register('good')\ndef build(settings): ...\n")
    _module(root, "forgot", "def build(settings): ...\n")
    with pytest.raises(RegistryError, match=r"fake_entries/forgot.py: registers no widget"):
        registry.names()


def test_a_name_given_twice_names_both_modules(package):
    root, registry = package
    _module(root, "a", "@WIDGETS.register('same')\ndef build(settings): ...\n")
    _module(root, "b", "@WIDGETS.register('same')\ndef build(settings): ...\n")
    with pytest.raises(RegistryError, match=r"fake_entries/b.py: widget 'same' is already .* a"):
        registry.names()


@pytest.mark.parametrize(
    "settings, expected",
    [
        ("class S(EntrySettings):\n    width: int\n", "needs a default for width"),
        ("from pydantic import BaseModel\nclass S(BaseModel):\n    width: int = 1\n", "subclass"),
    ],
    ids=["no-default", "not-entry-settings"],
)
def test_a_bad_settings_model_is_named(package, settings, expected):
    root, registry = package
    _module(root, "w", settings + "@WIDGETS.register('w', S)\ndef build(settings): ...\n")
    with pytest.raises(RegistryError, match=rf"fake_entries/w.py: widget 'w'.*{expected}"):
        registry.names()


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(RegistryError, match=r"model.name: no model named 'nope'; known: .*cnn"):
        MODELS.get("nope")


def test_a_saliency_method_must_be_a_method_class():
    with pytest.raises(RegistryError, match="lacks attribute"):
        SALIENCY_METHODS.add("plain_function", lambda s: None, EntrySettings, "tests.x")
    assert "plain_function" not in SALIENCY_METHODS


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_says_where_its_data_comes_from(name):
    entry = DATASETS.get(name)
    assert entry.summary and entry.meta.get("source", "optional") in {
        "none",
        "optional",
        "required",
    }
    if entry.meta.get("source") in {"none", "required"}:
        assert entry.meta["source_help"]
    if "spec" in entry.meta:  # a catalogued IDX dataset: mirrors and checksums
        assert entry.meta["spec"].mirrors and all(f.md5 for f in entry.meta["spec"].files)
