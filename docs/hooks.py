"""MkDocs hook: the parts of the site that the code knows, generated at build time.

A page asks for a generated part with a marker on a line of its own, `<!-- generated: params -->`.
The params reference comes from the pydantic models in `exigo.core.params` (names, types, defaults,
allowed values, the cross-key checks), with each key's help from its field description, else from
its comment in params.yaml. The lists of datasets, models and methods come from the registries
(`exigo.core.registry`): each entry's name, module, settings and docstring.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PARAMS_YAML = ROOT / "params.yaml"
SWEEP_YAML = ROOT / "sweep.yaml"
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)

if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))  # this checkout's exigo, not another installed copy


# ---- the lists: read from the registries ----


def _registry(kind: str) -> Any:
    from exigo.core import registry

    return {r.kind: r for r in registry.REGISTRIES}[kind]


def _settings_cell(entry: Any, parent: str) -> str:
    """An entry's own keys with their defaults, as `section.key` = default."""
    fields = entry.settings.model_fields
    if not fields:
        return "none"
    section = f"{parent}.{entry.name}"
    return "<br>".join(
        f"`{section}.{key}` = `{json.dumps(f.get_default(call_default_factory=True))}`"
        for key, f in fields.items()
    )


PARENT = {"dataset": "data", "model": "model", "saliency method": "saliency"}
PARENT["embedding method"] = "embed"


def _module_link(entry: Any, root: str) -> str:
    path = entry.module.replace(".", "/")
    return f"`{path.removeprefix('exigo/')}.py`"


# ---- the params reference ----


def yaml_comments(text: str) -> dict[str, str]:
    """{'train.lr': 'peak learning rate', ...}: each key's comment in params.yaml, with the
    comment-only lines under it joined on."""
    comments: dict[str, str] = {}
    section, last = "", ""
    for line in text.splitlines():
        key = re.match(r"^(\s*)([A-Za-z_][\w-]*):(.*)$", line)
        if key:
            indent, name, rest = key.groups()
            section = name if not indent else section
            last = name if not indent else f"{section}.{name}"
            comment = _comment(rest)
            if comment:
                comments[last] = comment
            continue
        more = re.match(r"^\s+#\s?(.*)$", line)
        if more and last in comments:
            comments[last] += " " + more.group(1).strip()
    return comments


def _comment(rest: str) -> str:
    """The comment after a YAML value (a '#' after whitespace, outside quotes)."""
    quote = ""
    for i, ch in enumerate(rest):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[i + 1 :].strip()
    return ""


def _bounds(metadata: list[Any]) -> list[str]:
    """'≥ 1', '< 1', 'at least 1 item' from pydantic/annotated_types constraints."""
    out = []
    for item in metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
        if getattr(item, "min_length", None):
            out.append(f"at least {item.min_length}")
        nested = getattr(item, "metadata", None)  # a FieldInfo inside Annotated[...]
        if isinstance(nested, list):
            out += _bounds(nested)
    return out


def describe_type(annotation: Any, metadata: list[Any] = ()) -> tuple[str, str]:
    """(type, allowed values) of a field, in words."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return describe_type(args[0], [*metadata, *args[1:]])
    if origin in (Union, types.UnionType):
        kinds = [describe_type(a, metadata) for a in args if a is not type(None)]
        if len(kinds) == 1:
            kind, allowed = kinds[0]
        else:  # str | int | float | bool: any YAML scalar
            kind, allowed = ("scalar" if len(kinds) > 2 else " or ".join(k for k, _ in kinds)), ""
        return (f"{kind} or null" if type(None) in args else kind), allowed
    if origin is Literal:
        return "one of", ", ".join(f"`{v}`" for v in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            kind, allowed = describe_type(args[0])
            kind = kind.removesuffix(" or null")
            kind = {"one of": "text", "scalar": "scalars", "mapping": "mappings"}.get(kind, kind)
            limits = _bounds(list(metadata))
            return f"list of {kind}", "; ".join(x for x in (allowed, *limits) if x)
        kind, allowed = describe_type(args[0])
        return f"list of {len(args)} {kind}s", allowed
    if origin is dict:
        return "mapping", ""
    names = {int: "integer", float: "number", str: "text", bool: "true or false"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))), ", ".join(
        _bounds(list(metadata))
    )


def _plain(value: Any) -> Any:
    """A default as YAML reads it back: tuples are lists."""
    return list(value) if isinstance(value, tuple) else value


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(_plain(value), default_flow_style=True).removesuffix("\n...\n").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def cross_key_checks(model: type) -> list[str]:
    """The messages of the ValueErrors a section's validators raise: the rules between keys
    (a section built from a registry takes them from the class it extends)."""
    from pydantic import BaseModel

    sources = []
    for cls in model.__mro__:
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel:
            try:
                sources.append(inspect.getsource(cls))
            except (OSError, TypeError):  # made by create_model: no source of its own
                continue
            break
    messages: list[str] = []
    for node in (n for src in sources for n in ast.walk(ast.parse(src))):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            arg = node.exc.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                messages.append(arg.value)
            elif isinstance(arg, ast.JoinedStr):
                messages.append("".join(_placeholder(v) for v in arg.values))
    return messages


TABLE_HEAD = ["| key | type | default | allowed | what it does |", "|---|---|---|---|---|"]
SHORT_HEAD = ["| key | type | default | allowed |", "|---|---|---|---|"]


def _model_of(annotation: Any) -> type | None:
    from pydantic import BaseModel

    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def field_rows(model: type, prefix: str, comments: dict, written: dict, file: str) -> list[str]:
    """A table row per key of a pydantic model, nested models and mappings of models included:
    the type, default and allowed values from the model, the help from the field's description,
    else from the YAML file's comment, else from a nested model's docstring."""
    rows = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        value_type = get_args(info.annotation)[1] if get_origin(info.annotation) is dict else None
        nested = _model_of(info.annotation)
        if nested is not None:
            rows += field_rows(nested, f"{key}.", comments, written.get(name) or {}, file)
            if nested.model_config.get("extra") == "allow":  # e.g. an Optuna sampler's arguments
                rows.append(f"| `{key}.<other>` | any | | | {_cell(_summary(nested))} |")
            continue
        kind, allowed = describe_type(info.annotation, list(info.metadata))
        default = "required" if info.is_required() else f"`{_yaml_value(info.default)}`"
        if name in written and not isinstance(written[name], dict):  # (mappings: too long)
            shown = _yaml_value(written[name])
            same = not info.is_required() and written[name] == _plain(info.default)  # 30 == 30.0
            if not same and (info.is_required() or shown != _yaml_value(info.default)):
                default += f" ({file}: `{shown}`)"
        what = info.description or comments.get(key, "")
        if _model_of(value_type) is not None:  # a mapping of models: its entries' keys follow
            what = what or _summary(value_type)
        rows.append("| " + " | ".join(_cell(c) for c in (f"`{key}`", kind, default, allowed, what)))
        if _model_of(value_type) is not None:
            rows += field_rows(value_type, f"{key}.<key>.", comments, {}, file)
    return [row if row.endswith("|") else row + " |" for row in rows]


def _placeholder(part: ast.expr) -> str:
    """A piece of an f-string message: its text, `<name>` for a variable, `…` for the rest."""
    if isinstance(part, ast.Constant):
        return str(part.value)
    value = part.value if isinstance(part, ast.FormattedValue) else part
    if isinstance(value, ast.Name):
        return f"<{value.id}>"
    if isinstance(value, ast.Attribute):
        return f"<{value.attr}>"
    return "…"


def params_reference(root: str = "") -> str:
    """One table per params.yaml section: key, type, default, allowed values, what it does."""
    from exigo.core.params import Params

    comments = yaml_comments(PARAMS_YAML.read_text())
    written = yaml.safe_load(PARAMS_YAML.read_text()) or {}
    out = []
    for section, field in Params.model_fields.items():
        model = field.annotation
        out += [f"## `{section}`", ""]
        if comments.get(section):
            out += [comments[section], ""]
        out += TABLE_HEAD
        out += field_rows(model, f"{section}.", comments, written.get(section) or {}, "params.yaml")
        checks = cross_key_checks(model)
        if checks:
            out += ["", "Checked across keys:", ""]
            out += [f"- {_cell(message).replace('<', '&lt;')}" for message in checks]
        out.append("")
    return "\n".join(out)


def sweep_reference(root: str = "") -> str:
    """sweep.yaml's keys, from `exigo.sweep.config.SweepConfig`, with the example's comments."""
    from exigo.sweep.config import SweepConfig

    text = SWEEP_YAML.read_text()
    rows = field_rows(SweepConfig, "", {}, yaml.safe_load(text), "sweep.yaml")
    rows = [row.rsplit(" | ", 1)[0] + " |" for row in rows]  # no help column: the prose has it
    checks = [c for m in (SweepConfig, *_nested(SweepConfig)) for c in cross_key_checks(m)]
    out = [*SHORT_HEAD, *rows, "", "Checked across keys:", ""]
    return (
        "\n".join(out + [f"- {_cell(message).replace('<', '&lt;')}" for message in checks]) + "\n"
    )


def _nested(model: type) -> list[type]:
    """The models a model's fields hold (directly, or as the values of a mapping)."""
    found = []
    for info in model.model_fields.values():
        for candidate in (info.annotation, *get_args(info.annotation)):
            if _model_of(candidate) is not None and candidate not in found:
                found.append(candidate)
    return found


# ---- the lists as tables ----


def _summary(obj: Any) -> str:
    """The first paragraph of an object's docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def datasets_table(root: str = "") -> str:
    rows = ["| `data.name` | what | its settings | module |", "|---|---|---|---|"]
    for e in _registry("dataset"):
        rows.append(
            f"| `{e.name}` | {_cell(e.summary)} | {_settings_cell(e, PARENT[e.kind])} | {_module_link(e, root)} |"
        )
    return "\n".join(rows) + "\n"


def models_table(root: str = "") -> str:
    from exigo.models.checkpoint import build_model

    rows = [
        "| `model.name` | what | its settings | parameters (10 classes, defaults) | Grad-CAM layer |",
        "|---|---|---|---|---|",
    ]
    for e in _registry("model"):
        model = build_model(e.name, e.parse(), 10, 0.0, 1.0)
        n = sum(p.numel() for p in model.parameters())
        rows.append(
            f"| `{e.name}` | {_cell(e.summary)} | {_settings_cell(e, PARENT[e.kind])} | {n:,} | `{model.last_conv}` |"
        )
    return "\n".join(rows) + "\n"


def methods_table(root: str = "") -> str:
    from exigo.core.params import SaliencyParams

    default = SaliencyParams().methods
    rows = [
        "| `saliency.methods` | what | its settings | pixels ranked by | in the defaults |",
        "|---|---|---|---|---|",
    ]
    for e in _registry("saliency method"):
        rank = "magnitude, \\|map\\|" if e.target.rank_by_magnitude else "the signed map"
        rows.append(
            f"| `{e.name}` | {_cell(e.summary)} | {_settings_cell(e, PARENT[e.kind])} | {rank} | "
            f"{'yes' if e.name in default else 'no'} |"
        )
    return "\n".join(rows) + "\n"


def projections_table(root: str = "") -> str:
    rows = ["| `embed.method` | what | its settings |", "|---|---|---|"]
    for e in _registry("embedding method"):
        rows.append(f"| `{e.name}` | {_cell(e.summary)} | {_settings_cell(e, PARENT[e.kind])} |")
    return "\n".join(rows) + "\n"


# ---- the numbers of the run behind the figures (docs/run.json, written by docs/figures.py) ----

RUN_JSON = Path(__file__).resolve().parent / "run.json"


def _run() -> dict:
    if not RUN_JSON.exists():
        from mkdocs.exceptions import PluginError

        raise PluginError(
            f"{RUN_JSON}: missing; run python docs/figures.py <project after dvc repro>"
        )
    return json.loads(RUN_JSON.read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def run_summary(root: str = "") -> str:
    """What the run was (params that matter, machine, time) and its headline numbers."""
    run = _run()
    p, m, train = run["params"], run["machine"], run["train"]
    cpu = f"{m['cores']} cores of an {m['cpu']}" + (", AVX512-BF16" if m["avx512_bf16"] else "")
    embed = run["embed_detail"]["learned"]
    from exigo.core.params import flatten

    committed = flatten(yaml.safe_load(PARAMS_YAML.read_text()))
    changed = ", ".join(
        f"`{k}: {_yaml_value(v)}`" for k, v in flatten(p).items() if committed.get(k) != v
    )
    rows = [
        ("params", f"the committed `params.yaml`, with {changed or 'nothing changed'}"),
        ("model", f"`{p['model']['name']}`, {train['n_parameters']:,} parameters"),
        ("training", f"{p['train']['epochs']} epochs; best epoch {train['best_epoch']}"),
        ("validation accuracy", _pct(train["val_acc"])),
        ("test accuracy", _pct(run["evaluate"]["accuracy"])),
        ("best saliency method", f"`{run['saliency']['best_method']}`"),
        (
            "learned map: trustworthiness, 2-D k-NN accuracy",
            f"{embed['trustworthiness']:.3f}, {_pct(embed['knn_acc_2d'])}",
        ),
        ("machine", f"{cpu}, no GPU; torch {m['torch']}, Python {m['python']}"),
    ]
    if run.get("took"):
        rows.append(("`dvc repro`, all stages", run["took"]))
    return "| | the run |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"


def run_saliency(root: str = "") -> str:
    """Each method's deletion and insertion AUC and randomisation check, in the run."""
    detail = _run()["saliency_detail"]
    rows = [
        "| method | deletion AUC ↓ | insertion AUC ↑ | randomised ρ | flagged |",
        "|---|---|---|---|---|",
    ]
    for method, deletion in detail["deletion_auc"].items():
        rho = detail["randomization_spearman"].get(method)
        flagged = detail["randomization_flagged"].get(method)
        name = "random order" if method == "random" else f"`{method}`"
        rows.append(
            f"| {name} | {deletion:.3f} | {detail['insertion_auc'][method]:.3f} | "
            + ("" if rho is None else f"{rho:.2f}".replace("-", "−"))
            + " | "
            + ("" if flagged is None else ("yes" if flagged else "no"))
            + " |"
        )
    return "\n".join(rows) + "\n"


def run_embed(root: str = "") -> str:
    """The map's quality numbers for the learned features and the two baselines, in the run."""
    detail = _run()["embed_detail"]
    keys = ("trustworthiness", "knn_acc_2d", "knn_acc_full", "silhouette_2d", "silhouette_full")
    rows = ["| space | " + " | ".join(f"`{k}`" for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for space in ("learned", "untrained", "pixels"):
        rows.append(f"| `{space}` | " + " | ".join(f"{detail[space][k]:.3f}" for k in keys) + " |")
    return "\n".join(rows) + "\n"


def moved_keys(root: str = "") -> str:
    """The keys of earlier params.yaml files that now sit under their entry's name."""
    from exigo.core.params import MOVED

    rows = ["| earlier key | now |", "|---|---|"]
    rows += [f"| `{old}` | `{new}` |" for old, new in MOVED.items()]
    return "\n".join(rows) + "\n"


GENERATORS = {
    "params": params_reference,
    "moved": moved_keys,
    "sweep": sweep_reference,
    "datasets": datasets_table,
    "models": models_table,
    "saliency-methods": methods_table,
    "embedding-methods": projections_table,
    "run": run_summary,
    "run-saliency": run_saliency,
    "run-embed": run_embed,
}


def render(markdown: str, where: str = "index.md") -> str:
    """The page `where` (its path under docs/) with each marker replaced by what it names; an
    unknown name is an error."""
    root = "../" * where.count("/")  # links in generated tables are relative to the page

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            from mkdocs.exceptions import PluginError

            raise PluginError(
                f"{where}: unknown generated part '{name}'; known: {list(GENERATORS)}"
            )
        return GENERATORS[name](root).rstrip("\n")

    return MARKER.sub(replace, markdown)


# ---- MkDocs events ----


def on_config(config: Any) -> Any:
    """`mkdocs serve` rebuilds when the code or params.yaml that the pages are made from change."""
    for path in (SRC / "exigo", PARAMS_YAML):
        if str(path) not in config.watch:
            config.watch.append(str(path))
    return config


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    return render(markdown, page.file.src_uri)
