"""End to end on data that is not MNIST, with real `dvc exp run`: a folder of RGB photos of another
size with 3 classes trained by a model class from a file in the repo, a grey folder with its own
test/, and CIFAR-10's real archive format served by a local mirror."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
import yaml
from conftest import (
    TINY_PARAMS,
    dvc,
    init_repo,
    make_env,
    make_project,
    mlflow_runs,
    mlflow_store,
    serve_mirror,
)
from conftest import tiny_params as base_params
from PIL import Image
from test_formats import cifar_archive
from test_your_data import photos

from exigo.data.formats import CIFAR10
from exigo.models.checkpoint import load_checkpoint

MODEL = '''
"""A user's model: built with the keyword arguments exigo documents."""
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels, num_classes, image_size):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))
'''

PARAMS = {  # conftest's tiny params, smaller still: three pipelines run here
    "embed": {"n_points": 24, "method": "pca", "neighbors": 3, "folds": 2},
    "saliency": {
        **TINY_PARAMS["saliency"],
        "n_images": 3,
        "n_eval": 12,
        "n_randomization": 4,
        "integrated_gradients": {"steps": 2},
        "deletion_steps": 3,
        "n_pairs": 1,
    },
}


def tiny_params(data: dict, model: dict) -> dict:
    params = base_params(data=data, model=model, **PARAMS)
    params["train"]["epochs"] = 2
    return params


def exp_run(project, env, *sets: str, target: str | None = None) -> str:
    """`dvc exp run -S ...` of the whole pipeline, or up to `target` (a stage)."""
    args = [a for s in sets for a in ("-S", s)] + ([target] if target else [])
    return dvc("exp", "run", *args, cwd=project, env=env).stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC repo whose params name an RGB folder of 20x24 photos and a model class of the
    user's own, in my_models.py beside params.yaml."""
    tmp = tmp_path_factory.mktemp("any")
    photos(tmp / "photos", n=12, size=(20, 24))
    params = tiny_params(
        {"name": "folder", "source": str(tmp / "photos"), "val_size": 0.2},
        {"name": "my_models:Net", "code": "my_models.py"},
    )
    project = make_project(tmp / "shop", params)
    (project / "my_models.py").write_text(MODEL)
    env = make_env(tmp)
    return init_repo(project, env), env, tmp


# Three pipelines (about 9 minutes on 2 cores): slow. tests/test_your_data.py, test_models.py and
# test_saliency.py cover each piece in the default suite.
@pytest.mark.slow
@pytest.mark.incremental
class TestAnyData:
    def test_an_rgb_folder_and_a_model_of_ones_own_run_every_stage(self, repo, monkeypatch):
        project, env, _ = repo
        exp_run(project, env)
        monkeypatch.syspath_prepend(str(project))  # the checkpoint names my_models:Net
        meta = json.loads((project / "data/folder/meta.json").read_text())
        assert meta["shape"] == [3, 20, 24] and meta["classes"] == ["apple", "leaf", "sky"]
        model, ckpt = load_checkpoint(project / "models/model.pt")
        assert ckpt["model"]["name"] == "my_models:Net" and ckpt["shape"] == [3, 20, 24]
        saliency = json.loads((project / "metrics/saliency.json").read_text())
        assert 0 <= saliency["deletion_auc"] <= 1
        for figure in ("methods", "gradient", "class_means"):
            assert (project / f"plots/saliency/images/{figure}.png").stat().st_size > 5000
        sprite = Image.open(project / "logs/test_embeddings/sprite.png")
        side = math.ceil(math.sqrt(meta["sizes"]["test"]))  # every test image, a square sheet
        assert sprite.mode == "RGB" and sprite.size == (side * 24, side * 20)  # at native size
        config = (project / "logs/test_embeddings/projector_config.pbtxt").read_text()
        assert re.findall(r"single_image_dim: (\d+)", config)[:2] == ["24", "20"]
        metadata = (project / "logs/test_embeddings/metadata.tsv").read_text().splitlines()
        assert metadata[0].split("\t")[-1] == "label" and "apple" in metadata[1]
        (run,) = mlflow_runs(project)
        assert run.data.params["model.name"] == "my_models:Net"
        import mlflow

        with mlflow_store(f"sqlite:///{project / 'mlflow.db'}"):
            (logged,) = mlflow.search_logged_models(
                experiment_ids=[run.info.experiment_id], output_format="list"
            )
            info = mlflow.models.get_model_info(f"models:/{logged.model_id}")
        (inputs,) = info.signature.inputs.to_dict()
        assert tuple(inputs["tensor-spec"]["shape"]) == (-1, 3, 20, 24)

    def test_editing_the_model_file_reruns_train(self, repo):
        project, env, _ = repo
        assert "Data and pipelines are up to date" in dvc("status", cwd=project, env=env).stdout
        path = project / "my_models.py"
        path.write_text(path.read_text().replace("nn.Linear(32", "nn.Linear(32 ") + "\n# v2\n")
        status = dvc("status", cwd=project, env=env).stdout
        assert "train:" in status and "my_models.py" in status and "download:" not in status

    def test_a_grey_folder_with_its_own_test_split(self, repo):
        project, env, tmp = repo
        grey = tmp / "grey"
        photos(grey / "train", ("a", "b"), n=10, size=(16, 16), grey=True)
        photos(grey / "test", ("a", "b"), n=4, size=(16, 16), grey=True, seed=1)
        exp_run(project, env, f"data.source={grey}", "model.name=cnn", target="embed")
        meta = json.loads((project / "data/folder/meta.json").read_text())
        assert meta["shape"] == [1, 16, 16] and meta["sizes"]["test"] == 8
        assert Image.open(project / "logs/test_embeddings/sprite.png").mode == "L"

    def test_cifar10_in_its_real_format_from_a_mirror(self, repo):
        """The archive format, the download, its verification and cache are the real ones; the
        small archive's md5 stands in for the official one in this project's copy of cifar10.py
        (the only edit), and the mirror on 127.0.0.1 for the official URL."""
        project, env, tmp = repo
        archive = cifar_archive(tmp / "cifar-10-python.tar.gz", CIFAR10, n=12)
        with serve_mirror(tmp / "www") as mirror:
            url = mirror.add("cifar", {archive.name: archive.read_bytes()})
            entry = project / "src/exigo/data/sources/cifar10.py"
            import hashlib

            md5 = hashlib.md5(archive.read_bytes()).hexdigest()
            text = entry.read_text().replace("c58f30108f718f92721af3b95e74349a", md5)
            entry.write_text(text.replace("https://www.cs.toronto.edu/~kriz/", url))
            env = {**env, "PYTHONPATH": os.pathsep.join([str(project), str(project / "src")])}
            sets = ("data.name=cifar10", "data.source=null", "model.name=cnn")
            out = exp_run(project, env, *sets, target="evaluate")
        assert "cifar-10-python.tar.gz" in out and "verified" in out
        meta = json.loads((project / "data/cifar10/meta.json").read_text())
        assert meta["shape"] == [3, 32, 32] and len(meta["classes"]) == 10
        assert meta["files"]["cifar-10-python.tar.gz"]["md5"] == md5
        params = yaml.safe_load((project / "params.yaml").read_text())
        assert params["data"]["name"] == "cifar10"
        assert np.isfinite(json.loads((project / "metrics/evaluate.json").read_text())["accuracy"])
