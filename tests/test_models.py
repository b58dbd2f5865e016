"""Every model keeps exigo's contract, whoever wrote it (the registry, timm, a user's file):
logits, penultimate features, a Grad-CAM layer, its blocks, a checkpoint that reloads; and the
training augmentation is seeded."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid

import pytest
import torch
from torch import nn

from exigo.core.errors import ExigoError
from exigo.core.params import TrainParams
from exigo.core.registry import MODELS
from exigo.data.splits import Split
from exigo.models.checkpoint import (
    ModelCodeError,
    build_model,
    load_checkpoint,
    save_checkpoint,
    settings_record,
)
from exigo.models.training import augment, cpu_state, fit

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 8, 8)]
CPU = torch.device("cpu")
HAS_TIMM = importlib.util.find_spec("timm") is not None
needs_timm = pytest.mark.skipif(
    not HAS_TIMM, reason="timm is not installed: pip install -e '.[timm]'"
)


def norm(shape):
    return [0.4] * shape[0], [0.25] * shape[0]


def cam_shape(model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """The output shape of the model's Grad-CAM layer for `x`."""
    seen = {}
    layer = model.get_submodule(model.last_conv)
    hook = layer.register_forward_hook(lambda _m, _a, out: seen.update(shape=tuple(out.shape)))
    with torch.no_grad():
        model(x)
    hook.remove()
    return seen["shape"]


def check_contract(model: nn.Module, shape, num_classes: int) -> torch.Tensor:
    """Logits (B, K), features (B, D), blocks that hold weights; returns the logits."""
    model.eval()
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert logits.shape == (3, num_classes)
    assert feats.ndim == 2 and feats.shape[0] == 3 and torch.isfinite(feats).all()
    blocks = model.blocks()
    assert blocks and "normalize" not in blocks
    for name in blocks:
        assert any(True for _ in model.get_submodule(name).parameters()), name
    return logits


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_takes_every_image_size(name, shape):
    settings = {"width": 8} if name == "resnet" else {}
    mean, std = norm(shape)
    if name == "basic_cnn" and min(shape[1:]) < 12:  # its head reads every pixel: it refuses
        with pytest.raises(ExigoError, match="basic_cnn takes images from"):
            build_model(name, settings, 10, mean, std, shape)
        return
    model = build_model(name, settings, 10, mean, std, shape)
    check_contract(model, shape, 10)
    cam = cam_shape(model, torch.rand(1, *shape))
    if min(shape[1:]) >= 16:  # room for a map larger than 1x1 after the model's poolings
        assert len(cam) == 4 and cam[2] * cam[3] > 1, cam


def test_resnet_is_page_resnet9_at_32x32():
    """ResNet-9 as published: 6.57M weights (batch norms included), 512 channels at 4x4 into a global max-pool."""
    model = build_model("resnet", {}, 10, *norm((3, 32, 32)), (3, 32, 32))
    assert sum(p.numel() for p in model.parameters()) == 6_573_120
    assert cam_shape(model, torch.rand(1, 3, 32, 32)) == (1, 512, 4, 4)
    assert model.blocks() == ["prep", "layer1", "layer2", "layer3", "head"]
    assert model.features(torch.rand(2, 3, 32, 32)).shape == (2, 512)


# --- timm -------------------------------------------------------------------------------------


@needs_timm
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)], ids=["3x32x32", "1x28x28"])
def test_a_timm_model_keeps_the_contract(shape):
    model = build_model("timm:test_resnet", {}, 7, *norm(shape), shape)
    check_contract(model, shape, 7)
    x = torch.rand(2, *shape)
    with torch.no_grad():  # its features are timm's own pre-logits
        net = model.net
        expected = net.forward_head(net.forward_features(model.normalize(x)), pre_logits=True)
        assert torch.equal(model.features(x), expected)
    assert model.blocks()[:2] == ["net.conv1", "net.bn1"]
    cam = cam_shape(model, x[:1])
    assert cam[2] * cam[3] > 1 and model.last_conv.startswith("net.layer")  # a stage of timm's


@needs_timm
def test_timm_model_args_pass_through_and_fixed_ones_are_refused():
    small = build_model("timm:test_resnet", {"drop_rate": 0.5}, 3, 0.5, 0.2, (3, 32, 32))
    assert small.net.drop_rate == 0.5
    with pytest.raises(ModelCodeError, match="exigo sets pretrained itself"):
        build_model("timm:test_resnet", {"pretrained": True}, 3, 0.5, 0.2, (3, 32, 32))


@needs_timm
def test_an_unknown_timm_model_suggests_close_names():
    with pytest.raises(ModelCodeError) as err:
        build_model("timm:test_resnt", {}, 3, 0.5, 0.2, (3, 32, 32))
    assert "no model 'test_resnt'" in str(err.value) and "test_resnet" in str(err.value)
    assert "\n" not in str(err.value)


def test_timm_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    with pytest.raises(ModelCodeError, match=r"pip install -e '\.\[timm\]'"):
        build_model("timm:resnet18", {}, 3, 0.5, 0.2, (3, 32, 32))


# --- a user's own class -----------------------------------------------------------------------

USER_CODE = """
import torch
from torch import nn


class Full(nn.Module):
    '''Takes all three sizes and a setting of its own; has features() and last_conv.'''

    def __init__(self, in_channels, num_classes, image_size, width=4):
        super().__init__()
        self.image_size = image_size
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)
        self.last_conv = "body.0"

    def features(self, x):
        return self.pool(self.body(x)).flatten(1)

    def forward(self, x):
        return self.fc(self.features(x))


class Bare(nn.Module):
    '''Takes num_classes only (three channels), no features(), no last_conv.'''

    def __init__(self, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.squash = nn.Conv2d(6, 6, 16)  # to 1x1 at 32x32: no use to Grad-CAM
        self.hidden = nn.Linear(6, 5)
        self.out = nn.Linear(5, num_classes)

    def forward(self, x):
        x = self.squash(torch.relu(self.conv2(torch.relu(self.conv1(x))))).flatten(1)
        return self.out(torch.relu(self.hidden(x)))


class Kw(nn.Module):
    '''Takes **kwargs; a torchvision-style `features` submodule, which is not features().'''

    def __init__(self, **kwargs):
        super().__init__()
        self.got = dict(kwargs)
        self.features = nn.Sequential(nn.Conv2d(kwargs["in_channels"], 4, 3), nn.ReLU())
        self.classifier = nn.Linear(4, kwargs["num_classes"])

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class Mlp(nn.Module):
    def __init__(self, in_channels, num_classes, image_size):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes))

    def forward(self, x):
        return self.fc(x)


class Refuses(nn.Module):
    def __init__(self, num_classes):
        raise ValueError(f"{num_classes} classes? I only do 2")


class WrongOutput(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(3, num_classes + 1)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of USER_CODE under a fresh name in tmp_path, importable; yields its name."""
    name = f"user_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_CODE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_user_class_with_features_and_last_conv(user_module):
    shape = (1, 20, 24)
    model = build_model(f"{user_module}:Full", {"width": 6}, 4, 0.5, 0.2, shape)
    check_contract(model, shape, 4)
    assert model.net.image_size == (20, 24) and model.net.fc.in_features == 6  # model.args
    assert model.last_conv == "net.body.0" and model.blocks() == ["net.body", "net.fc"]
    x = torch.rand(2, *shape)
    assert torch.equal(model.features(x), model.net.features(model.normalize(x)))


def test_a_user_class_taking_only_num_classes(user_module):
    model = build_model(f"{user_module}:Bare", {}, 3, [0.5] * 3, [0.2] * 3, (3, 32, 32))
    check_contract(model, (3, 32, 32), 3)
    # Features: the input of its last linear layer; Grad-CAM: its last conv larger than 1x1.
    x = torch.rand(2, 3, 32, 32)
    captured = []
    model.net.out.register_forward_hook(lambda _m, args, _o: captured.append(args[0]))
    with torch.no_grad():
        model(x)
        assert torch.equal(model.features(x), captured[0]) and captured[0].shape == (2, 5)
    assert model.last_conv == "net.conv2"


def test_a_user_class_taking_kwargs_gets_every_size(user_module):
    model = build_model(f"{user_module}:Kw", {}, 5, 0.5, 0.2, (1, 12, 12))
    assert model.net.got == {"in_channels": 1, "num_classes": 5, "image_size": (12, 12)}
    assert model.features(torch.rand(2, 1, 12, 12)).shape == (2, 4)  # not the conv stack's maps


def test_a_model_without_conv_layers_has_no_gradcam_layer(user_module):
    model = build_model(f"{user_module}:Mlp", {}, 3, 0.5, 0.2, (1, 8, 8))
    check_contract(model, (1, 8, 8), 3)
    assert model.last_conv is None


@pytest.mark.parametrize(
    ("target", "args", "expected"),
    [
        ("Refuses", {}, r"Refuses\(num_classes=3\) failed: ValueError: 3 classes\? I only do 2"),
        ("WrongOutput", {}, r"forward returns \(1, 4\) for a batch of 1, not \(1, 3\)"),
        ("Full", {"depth": 2}, r"Full\(.*depth=2\) failed: TypeError"),
        ("Full", {"num_classes": 3}, "exigo passes num_classes itself"),
        ("Missing", {}, "has no 'Missing'.* its code is gone"),
    ],
)
def test_a_broken_user_model_is_one_line(user_module, target, args, expected):
    with pytest.raises(ModelCodeError, match=expected) as err:
        build_model(f"{user_module}:{target}", args, 3, [0.5] * 3, [0.2] * 3, (3, 8, 8))
    assert "\n" not in str(err.value)


# --- checkpoints ------------------------------------------------------------------------------


def save(path, model, name, settings, shape):
    mean, std = norm(shape)
    save_checkpoint(
        path, cpu_state(model), model={"name": name, "settings": settings_record(settings)},
        classes=["a", "b", "c"], normalization={"mean": mean, "std": std}, epoch=1,
        score=None, shape=list(shape),
    )  # fmt: skip


def reload_gives_same_logits(tmp_path, name, settings, shape):
    torch.manual_seed(0)
    model = build_model(name, settings, 3, *norm(shape), shape)
    with torch.no_grad():  # batch norm statistics that differ from a fresh model's
        model.train()(torch.rand(8, *shape) * 3)
    save(tmp_path / "model.pt", model, name, settings, shape)
    loaded, meta = load_checkpoint(tmp_path / "model.pt")
    x = torch.rand(4, *shape)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
        assert torch.equal(model.features(x), loaded.features(x))
    assert loaded.last_conv == model.last_conv and meta["shape"] == list(shape)


def test_a_registered_model_reloads_from_its_checkpoint(tmp_path):
    reload_gives_same_logits(tmp_path, "resnet", {"width": 4}, (3, 16, 16))


@needs_timm
def test_a_timm_model_reloads_from_its_checkpoint(tmp_path):
    reload_gives_same_logits(tmp_path, "timm:test_resnet", {}, (3, 32, 32))


def test_a_user_model_reloads_and_its_code_gone_is_one_line(tmp_path, user_module):
    reload_gives_same_logits(tmp_path, f"{user_module}:Full", {"width": 3}, (3, 12, 12))
    (tmp_path / f"{user_module}.py").unlink()
    sys.modules.pop(user_module)
    with pytest.raises(ModelCodeError) as err:
        load_checkpoint(tmp_path / "model.pt")
    assert f"no module '{user_module}'" in str(err.value) and "its code is gone" in str(err.value)
    assert "\n" not in str(err.value)


# --- augmentation -----------------------------------------------------------------------------


def test_crop_flip_is_a_shifted_or_mirrored_crop_of_the_reflected_image():
    x = torch.rand(16, 3, 32, 32)
    out = augment(x, "crop_flip", torch.Generator().manual_seed(0))
    padded = nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    flips = 0
    for img, pad in zip(out, padded, strict=True):
        crops = [
            (pad[:, r : r + 32, c : c + 32], mirrored)
            for r in range(9)
            for c in range(9)
            for mirrored in (False, True)
        ]
        found = [m for crop, m in crops if torch.equal(crop.flip(-1) if m else crop, img)]
        assert found, "not a crop of the padded image"
        flips += found[0]
    assert 0 < flips < 16


def test_augmentation_follows_the_seed():
    x = torch.rand(8, 1, 12, 12)
    for how in ("crop_flip", "crop_flip_cutout"):
        a, b = (augment(x, how, torch.Generator().manual_seed(3)) for _ in range(2))
        assert torch.equal(a, b) and not torch.equal(a, x)
        assert not torch.equal(a, augment(x, how, torch.Generator().manual_seed(4)))
    holed = augment(x + 1, "crop_flip_cutout", torch.Generator().manual_seed(3))
    assert ((holed == 0).flatten(1).sum(1) > 0).all()  # every image has its hole


def tiny_fit(seed: int, **train) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (40, 3, 12, 12), dtype=torch.uint8, generator=g)
    split = Split(images, torch.arange(40) % 3)
    torch.manual_seed(0)
    model = build_model("cnn3", {"width": 4}, 3, [0.5] * 3, [0.25] * 3, (3, 12, 12))
    cfg = TrainParams(epochs=2, batch_size=16, lr=0.01, device="cpu", precision="fp32", **train)
    return fit(model, split, split, cfg, seed, CPU).best_state


def test_augmented_training_repeats_exactly_and_none_changes_nothing(monkeypatch):
    augmented = tiny_fit(0, augment="crop_flip", label_smoothing=0.1)
    again = tiny_fit(0, augment="crop_flip", label_smoothing=0.1)
    assert all(torch.equal(augmented[k], again[k]) for k in augmented)
    import exigo.models.training as training

    def never(*_args):
        raise AssertionError("augment none must not augment")

    monkeypatch.setattr(training, "augment", never)
    plain = tiny_fit(0)  # augment none: no draws, no copies: the loop of before
    assert not all(torch.equal(plain[k], augmented[k]) for k in plain)
