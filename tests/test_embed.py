"""The embed stage: TensorBoard's projector serves our points; the quality numbers mean something."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from conftest import make_env, make_project, run_stage, tiny_params
from PIL import Image

from exigo.core.registry import PROJECTIONS
from exigo.data.splits import load_dataset
from exigo.embed.projection import extract_features, pick_points, project, quality
from exigo.models.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, tiny_idx):
    """One project through train and the three embed stages, shared by this file's tests (they
    read it; the determinism test re-runs embed, which must write the same bytes)."""
    tmp = tmp_path_factory.mktemp("embedded")
    env = make_env(tmp)
    data = {
        "name": "idx",
        "source": str(tiny_idx.folder),
        "idx": {"sha256": tiny_idx.payload_sha256},
    }
    project = make_project(tmp / "proj", tiny_params(data=data), code=False)
    for stage in (
        "download",
        "train",
        "embed_baseline pixels",
        "embed_baseline untrained",
        "embed",
    ):
        run_stage(stage, project, env)
    return project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


@pytest.fixture
def tensorboard(embedded):
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(embedded / "logs"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                if json.loads(get(f"{base}/data/plugin/projector/runs")):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"tensorboard did not come up: {proc.stderr.read() if proc.poll() is not None else 'timeout'}"
                )
            time.sleep(0.5)
        yield base, embedded
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tensorboard_projector_serves_our_points(tensorboard):
    from urllib.parse import quote

    base, project = tensorboard
    projector = f"{base}/data/plugin/projector"
    (run,) = json.loads(get(f"{projector}/runs"))
    assert run == "test_embeddings"  # named for what it holds, not "."
    info = json.loads(get(f"{projector}/info?run={run}"))
    names = {e["tensorName"]: e for e in info["embeddings"]}
    learned_name = "learned features (trained model)"
    assert set(names) == {learned_name, "untrained features (initial weights)"}
    query = f"run={run}&name={quote(learned_name)}"

    # The tensor it serves is our model's penultimate features of the test images.
    data = load_dataset(project / "data/idx")
    model, _ = load_checkpoint(project / "models/model.pt")
    feats, pred = extract_features(model, data.test, 64, torch.device("cpu"))
    learned = names[learned_name]
    assert learned["tensorShape"] == list(feats.shape)
    served = np.frombuffer(get(f"{projector}/tensor?{query}"), dtype=np.float32)
    np.testing.assert_allclose(served.reshape(feats.shape), feats, rtol=1e-4, atol=1e-5)

    rows = get(f"{projector}/metadata?{query}").decode().splitlines()
    # The projector labels by the first non-numeric column and colours by class only where the
    # class column is not numeric: "true → predicted" first, "class 3", the index last.
    assert rows[0].split("\t") == ["point", "class", "predicted", "correct", "label"]
    first = rows[1].split("\t")
    true, predicted = int(data.test.labels[0]), int(pred[0])
    assert first == [
        f"{true} → {predicted}",
        f"class {true}",
        f"class {predicted}",
        "yes" if true == predicted else "no",
        str(true),
    ]
    assert len(rows) == len(data.test) + 1

    sprite = get(f"{projector}/sprite_image?{query}")
    with Image.open(__import__("io").BytesIO(sprite)) as img:
        side = int(np.ceil(np.sqrt(len(data.test)))) * 28
        assert img.size == (side, side)
        # Un-normalised thumbnails: the first image's pixels, scaled to 0..255.
        top_left = np.asarray(img.convert("L"))[:28, :28].astype(int)
        assert np.abs(top_left - data.test.images[0].numpy().astype(int)).max() <= 1

    tags = json.loads(get(f"{base}/data/plugin/scalars/tags"))
    assert {"loss/train", "loss/val", "acc/train", "acc/val", "lr"} <= set(tags["training"])


def test_stage_outputs_and_determinism(embedded, stage_env):
    project = embedded
    n = len(load_dataset(project / "data/idx").test)
    with (project / "plots/embed/embedding.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n and set(rows[0]) == {"x", "y", "class", "predicted", "correct", "label"}
    metrics = json.loads((project / "metrics/detail/embed.json").read_text())
    assert set(metrics) == {"learned", "untrained", "pixels"}
    for values in metrics.values():
        assert set(values) == {
            "trustworthiness",
            "knn_acc_2d",
            "knn_acc_full",
            "silhouette_2d",
            "silhouette_full",
        }
        assert 0 <= values["trustworthiness"] <= 1 and 0 <= values["knn_acc_2d"] <= 1
    tracked = json.loads((project / "metrics/embed.json").read_text())  # what DVC shows
    assert tracked == {
        k: metrics["learned"][k] for k in ("trustworthiness", "knn_acc_2d", "silhouette_2d")
    }
    with Image.open(project / "plots/embed/images/embedding.png") as img:
        assert img.width > 2 * img.height  # three maps side by side
    before = {
        p: (project / p).read_bytes()
        for p in ("metrics/embed.json", "metrics/detail/embed.json", "plots/embed/embedding.csv")
    }
    run_stage("embed", project, stage_env)
    assert before == {p: (project / p).read_bytes() for p in before}


def clusters(n: int = 600, dims: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 6
    centers = rng.normal(0, 10, size=(6, dims))
    return (centers[labels] + rng.normal(0, 1, size=(n, dims))).astype(np.float32), labels


@pytest.mark.parametrize("method", PROJECTIONS.names())
def test_separated_clusters_score_high(method):
    x, labels = clusters()
    entry = PROJECTIONS.get(method)
    settings = entry.parse({"perplexity": 30, "pca_dims": 20} if method == "tsne" else {})
    low = project(x, method, seed=0, settings=settings)
    assert low.shape == (len(x), 2)
    q = quality(x, low, labels, k=10, folds=5, seed=0)
    assert q["knn_acc_2d"] > 0.95 and q["knn_acc_full"] > 0.95 and q["trustworthiness"] > 0.85
    assert q["silhouette_full"] > 0.5


def test_random_labels_score_near_chance():
    x, _ = clusters()
    labels = np.random.default_rng(1).integers(0, 6, len(x))
    low = project(x, "pca", seed=0)
    q = quality(x, low, labels, k=10, folds=5, seed=0)
    assert abs(q["knn_acc_full"] - 1 / 6) < 0.07 and abs(q["knn_acc_2d"] - 1 / 6) < 0.07
    assert abs(q["silhouette_full"]) < 0.1


def test_projection_is_deterministic_for_a_seed():
    x, _ = clusters(300)
    np.testing.assert_array_equal(project(x, "tsne", seed=3), project(x, "tsne", seed=3))
    assert not np.array_equal(project(x, "tsne", seed=3), project(x, "tsne", seed=4))


def test_pick_points_is_stratified_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    idx = pick_points(labels, 100, seed=0)
    assert len(idx) == 100 and np.bincount(labels[idx]).tolist() == [10] * 10
    assert np.array_equal(idx, pick_points(labels, 100, seed=0))
    assert len(pick_points(labels, None, seed=0)) == 500


def test_bad_embed_params_give_the_clear_error(tmp_path, stage_env):
    project = make_project(tmp_path / "proj", tiny_params(embed={"method": "umap"}), code=False)
    result = run_stage("embed", project, stage_env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    names = " or ".join(f"'{n}'" for n in PROJECTIONS.names())  # pca, tsne
    assert f"embed.method: input should be {names} (got 'umap')" in result.stderr


def test_the_sprite_is_in_colour_and_fits_tensorboards_limit(tmp_path):
    """RGB thumbnails stay RGB at native size; a sheet that would pass 8,192 px a side (10,000
    images of 224x224) scales each thumbnail down, aspect kept."""
    from exigo.embed.tensorboard import SPRITE_MAX, thumbnail_size, write_sprite

    images = torch.randint(0, 256, (5, 3, 12, 10), dtype=torch.uint8)
    assert write_sprite(tmp_path / "s.png", images) == (12, 10)
    with Image.open(tmp_path / "s.png") as img:
        assert img.mode == "RGB" and img.size == (3 * 10, 3 * 12)
        assert np.array_equal(np.asarray(img)[:12, :10], images[0].permute(1, 2, 0).numpy())
    assert thumbnail_size(1000, 224, 224) == (224, 224)  # 32 x 224 = 7,168 px: native
    h, w = thumbnail_size(10_000, 224, 160)
    assert 100 * h <= SPRITE_MAX and 100 * w <= SPRITE_MAX and abs(h / w - 224 / 160) < 0.05
    grey = write_sprite(tmp_path / "g.png", torch.zeros(2, 1, 9, 9, dtype=torch.uint8))
    with Image.open(tmp_path / "g.png") as img:
        assert grey == (9, 9) and img.mode == "L"
