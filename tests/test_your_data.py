"""Your own images and your own loader: a folder of class subfolders (`data.name: folder`) and an
import path (`data.name: my_pkg.my_data:load`), through the download stage; each bad input is one
line that names the file or key."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from conftest import make_project, run_stage, tiny_params
from PIL import Image

from exigo.core.errors import ExigoError, ParamsError
from exigo.core.params import parse_params
from exigo.data.formats import check_tree, resize
from exigo.data.raw import RawDataset
from exigo.data.splits import load_dataset
from exigo.data.user import load_user


def photos(root, classes=("apple", "leaf", "sky"), n=10, size=(20, 24), grey=False, seed=0):
    """n images per class, each with a bright patch in its class's channel (a learnable cue)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 80, (*size, 3)).astype(np.uint8)
            img[2:9, 3:11, c % 3] = 230
            pil = Image.fromarray(img[:, :, 0] if grey else img)
            pil.save(root / name / f"{i}.png")
    return root


def project(tmp_path, data: dict):
    return make_project(tmp_path / "proj", tiny_params(data=data), code=False)


def test_an_rgb_folder_becomes_nchw_splits_with_a_stratified_test_split(tmp_path, stage_env):
    source = photos(tmp_path / "photos")
    proj = project(tmp_path, {"name": "folder", "source": str(source), "val_size": 0.2})
    out = run_stage("download", proj, stage_env).stdout
    assert "images of 3x20x24, 3 classes" in out
    data = load_dataset(proj / "data" / "folder")
    assert data.classes == ("apple", "leaf", "sky") and data.meta["shape"] == [3, 20, 24]
    assert data.train.images.shape[1:] == (3, 20, 24) and data.train.images.dtype == torch.uint8
    assert data.meta["sizes"] == {"train": 19, "val": 5, "test": 6}  # 20 % test, then 20 % val
    assert data.meta["counts"]["test"] == {"apple": 2, "leaf": 2, "sky": 2}  # stratified
    assert len(data.meta["normalization"]["mean"]) == 3 and "sha256" in data.meta["tree"]


def test_a_grey_folder_with_test_and_a_size_is_resized_and_keeps_its_test(tmp_path, stage_env):
    source = tmp_path / "digits"
    photos(source / "train", ("a", "b"), n=6, size=(30, 30), grey=True)
    photos(source / "test", ("a", "b"), n=3, size=(30, 30), grey=True, seed=1)
    data = {"name": "folder", "source": str(source), "size": [16, 12], "val_size": 2}
    proj = project(tmp_path, data)
    run_stage("download", proj, stage_env)
    meta = json.loads((proj / "data" / "folder" / "meta.json").read_text())
    assert meta["shape"] == [1, 16, 12] and meta["sizes"] == {"train": 10, "val": 2, "test": 6}


def test_a_folder_changed_in_place_is_caught(tmp_path):
    source = photos(tmp_path / "photos", n=2)
    from exigo.data.formats import folder_digest

    recorded = {"path": str(source), "sha256": folder_digest(source)}
    check_tree(str(source), recorded, tmp_path / "data")  # unchanged: nothing to say
    Image.new("RGB", (24, 20)).save(source / "sky" / "0.png")
    with pytest.raises(ExigoError, match=r"changed since .* dvc repro -f download"):
        check_tree(str(source), recorded, tmp_path / "data")


def test_bad_folder_params_are_one_line(tmp_path, stage_env):
    with pytest.raises(ParamsError, match=r"name: folder needs source: a folder of class"):
        parse_params({"data": {"name": "folder"}})
    with pytest.raises(
        ParamsError, match=r"data.size.0: input should be greater than or equal to 8"
    ):
        parse_params({"data": {"name": "folder", "source": "x", "size": [4, 4]}})
    empty = tmp_path / "empty"
    empty.mkdir()
    proj = project(tmp_path, {"name": "folder", "source": str(empty)})
    result = run_stage("download", proj, stage_env, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith(
        "empty: no class subfolders (expected " + f"{empty}/<class>/<image>)"
    )
    assert not (proj / "data" / "folder").exists()  # nothing half-written


LOADER = """
import numpy as np

def load(source=None, size=None):
    rng = np.random.default_rng(0)
    x = rng.random((30, 3, 10, 12)).astype("float32")  # floats in [0, 1]
    y = np.arange(30) % 3
    return {"classes": ["r", "g", "b"], "train": (x, y)}

def arrays_nchw_uint8():
    x = np.full((8, 1, 9, 9), 7, dtype=np.uint8)
    return {"classes": ["a", "b"], "train": (x, np.arange(8) % 2), "test": (x[:4], np.arange(4) % 2)}

def as_dataset():
    import torch
    from PIL import Image

    class Pics(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return Image.new("RGB", (11, 9), (40 * i, 0, 0)), i % 2

    return {"classes": ["a", "b"], "train": Pics(), "test": Pics(), "val": Pics()}

def wrong_type():
    return [1, 2, 3]

def bad_labels():
    x = np.zeros((4, 9, 9), dtype=np.uint8)
    return {"classes": ["a", "b"], "train": (x, np.array([0, 1, 2, 0]))}

def raises():
    raise RuntimeError("disk on fire")

def out_of_range():
    return {"classes": ["a", "b"], "train": (np.full((4, 9, 9), 2.0), np.arange(4) % 2)}
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_data.py").write_text(LOADER)
    monkeypatch.delitem(sys.modules, "my_data", raising=False)  # another test's copy
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_user_loader_of_arrays_or_datasets_meets_the_contract(user_module):
    raw = load_user("my_data:load", None, None, log=lambda _: None)
    assert raw.train_images.shape == (24, 3, 10, 12) and raw.train_images.dtype == np.uint8
    assert len(raw.test_labels) == 6 and raw.classes == ("r", "g", "b")  # 20 % held out
    raw = load_user("my_data:arrays_nchw_uint8", None, None, log=lambda _: None)
    assert raw.test_images.shape == (4, 1, 9, 9) and (raw.train_images == 7).all()
    raw = load_user("my_data:as_dataset", None, None, log=lambda _: None)
    assert raw.train_images.shape == (6, 3, 9, 11) and raw.val_images.shape == (6, 3, 9, 11)
    assert raw.train_images[3, 0, 0, 0] == 120 and raw.train_labels.tolist() == [0, 1] * 3


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("my_data:wrong_type", r"returned list; expected a mapping with 'classes' and 'train'"),
        ("my_data:bad_labels", r"a train label is 2, outside 0..1 for 2 classes"),
        ("my_data:raises", r"my_data:raises raised RuntimeError: disk on fire"),
        ("my_data:out_of_range", r"float pixels must lie in \[0, 1\]"),
        ("my_data:nothing", r"my_data has no function 'nothing'"),
        ("no_such_module:load", r"no module 'no_such_module'"),
    ],
)
def test_a_user_loader_that_breaks_the_contract_is_one_line(user_module, name, message):
    with pytest.raises(ExigoError, match=message):
        load_user(name, None, None, log=lambda _: None)


def test_params_name_a_user_loader_only_with_its_file_watched(user_module):
    (user_module / "src").mkdir()
    with pytest.raises(ParamsError, match=r"data.code: my_data.py \(DVC watches it"):
        parse_params({"data": {"name": "my_data:load", "code": "src"}})
    assert parse_params({"data": {"name": "my_data:load", "code": "my_data.py"}}).data.name
    assert parse_params({"data": {"name": "my_data:load", "code": "."}}).data.name  # a folder
    with pytest.raises(ParamsError, match=r"data.name: 'my data' is no dataset of exigo"):
        parse_params({"data": {"name": "my data"}})


def test_raw_datasets_refuse_what_exigo_cannot_use():
    x = np.zeros((4, 3, 10, 10), dtype=np.uint8)
    y = np.arange(4) % 2
    with pytest.raises(ExigoError, match=r"\(N, C, H, W\) with C = 1 \(grey\) or 3 \(RGB\)"):
        RawDataset(np.zeros((4, 2, 10, 10), np.uint8), y, x, y, ("a", "b"))
    with pytest.raises(ExigoError, match=r"images are 6x6; at least 8x8"):
        RawDataset(
            np.zeros((4, 1, 6, 6), np.uint8), y, np.zeros((4, 1, 6, 6), np.uint8), y, ("a", "b")
        )
    with pytest.raises(
        ExigoError, match=r"train images are \(3, 10, 10\) but test images \(1, 10, 10\)"
    ):
        RawDataset(x, y, x[:, :1], y, ("a", "b"))
    with pytest.raises(ExigoError, match=r"1 classes; exigo takes 2 to 1,000"):
        RawDataset(x, y * 0, x, y * 0, ("a",))


def test_resize_is_antialiased_and_keeps_channels():
    stripes = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    stripes[:, :, :, ::2] = 255  # one-pixel stripes: an antialiased halving averages them
    small = resize(stripes, (4, 4))
    assert small.shape == (2, 3, 4, 4) and 100 < small.mean() < 155
    assert resize(stripes, (8, 8)) is stripes  # the same size: untouched


def test_a_user_package_that_fails_to_import_is_one_params_line(tmp_path, monkeypatch):
    """find_spec imports a module's parent package: one that raises is a line, not a traceback."""
    (tmp_path / "broken_pkg").mkdir()
    (tmp_path / "broken_pkg" / "__init__.py").write_text("raise RuntimeError('half-written')\n")
    (tmp_path / "broken_pkg" / "data.py").write_text("def load():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match=r"cannot find module 'broken_pkg.data' \(RuntimeError"):
        parse_params({"data": {"name": "broken_pkg.data:load", "code": "broken_pkg"}})
