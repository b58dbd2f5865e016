"""Classifiers for 28x28 grey images, and their checkpoints.

Every model takes inputs in [0, 1] shaped (B, 1, 28, 28), normalises them itself (so saliency
maps are gradients with respect to the real pixels), returns logits, exposes its penultimate
features through `features()`, and names its last conv layer in `last_conv` for Grad-CAM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from exigo.core.errors import ExigoError
from exigo.core.outputs import load_torch, require, save_torch, unreadable

CHECKPOINT_FORMAT = "exigo-checkpoint/1"


class Normalize(nn.Module):
    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    last_conv: str  # dotted module name of the last conv layer (Grad-CAM's target)

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) in [0, 1] -> (B, D) penultimate features."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes) logits


class BasicCNN(Classifier):
    """The original design: four 3x3 valid convs, 1->10->7->5->1 channels, then Linear 400->10.

    One change from the original: no ReLU after the last conv. Its single channel is the whole
    400-d embedding, and with a ReLU there one seed in seven (42 included) started with all 400
    features at exactly zero for every image: no gradient reaches the convs and the model never
    learns (accuracy stays at chance). The linear head needs no ReLU in front of it.
    """

    last_conv = "conv4"

    def __init__(self, num_classes: int = 10, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__(mean, std)
        self.conv1 = nn.Conv2d(1, 10, 3)  # 28 -> 26
        self.conv2 = nn.Conv2d(10, 7, 3)  # 26 -> 24
        self.conv3 = nn.Conv2d(7, 5, 3)  # 24 -> 22
        self.conv4 = nn.Conv2d(5, 1, 3)  # 22 -> 20
        self.head = nn.Linear(400, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        for conv in (self.conv1, self.conv2, self.conv3):
            x = torch.relu(conv(x))
        return self.conv4(x).flatten(1)  # (B, 400)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class CNN(Classifier):
    """Pool-early CNN: conv-BN-ReLU-pool twice, then a hidden layer. ~0.4M params, ~8 MFLOP per
    image forward: quick on two CPU cores, >99 % on MNIST in a few epochs."""

    last_conv = "conv2"

    def __init__(
        self,
        num_classes: int = 10,
        mean: float = 0.0,
        std: float = 1.0,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.25,
    ) -> None:
        super().__init__(mean, std)
        c1, c2 = channels
        self.conv1 = _conv_block(1, c1)  # (B, c1, 28, 28)
        self.conv2 = _conv_block(c1, c2)  # (B, c2, 14, 14)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv1(self.normalize(x)))  # (B, c1, 14, 14)
        x = self.pool(self.conv2(x))  # (B, c2, 7, 7)
        return self.fc(x)  # (B, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


MODELS: dict[str, type[Classifier]] = {"cnn": CNN, "basic_cnn": BasicCNN}


def model_settings(params: Any) -> dict[str, Any]:
    """The constructor settings a model takes from the `model` params section."""
    if params.name == "cnn":
        return {
            "channels": list(params.channels),
            "hidden": params.hidden,
            "dropout": params.dropout,
        }
    return {}


def build_model(
    name: str, settings: dict[str, Any], num_classes: int, mean: float, std: float
) -> Classifier:
    if name not in MODELS:
        raise ExigoError(f"model.name: unknown model '{name}'; allowed: {', '.join(MODELS)}")
    kwargs = dict(settings)
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    return MODELS[name](num_classes=num_classes, mean=mean, std=std, **kwargs)


def save_checkpoint(path: Path | str, state: dict[str, torch.Tensor], **meta: Any) -> None:
    """Weights plus everything needed to rebuild the model: loadable with weights_only=True."""
    save_torch(path, {"format": CHECKPOINT_FORMAT, "state_dict": state, **meta})


def load_checkpoint(
    path: Path | str, device: torch.device | str = "cpu"
) -> tuple[Classifier, dict]:
    """Rebuild a model from its checkpoint alone; returns (model in eval mode, checkpoint meta).

    Anything short of a complete checkpoint whose settings fit its weights (damaged bytes, keys
    missing, metadata that disagrees with the weights) is one `unreadable` line."""
    path = Path(path)
    ckpt = load_torch(path, "train")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ExigoError(f"{path}: not an exigo checkpoint; run dvc repro train again")
    keys = ["state_dict", "model.name", "model.settings", "classes", "normalization.mean"]
    keys += ["normalization.std", "epoch", "score"]
    if ckpt.get("score") is not None:  # None in the untrained init.pt
        keys += ["score.metric", "score.value"]
    require(ckpt, keys, path, "train")
    spec, norm, state = ckpt["model"], ckpt["normalization"], ckpt.pop("state_dict")
    try:
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise TypeError("the weights are not a dict of tensors")
        if not isinstance(spec["settings"], dict):
            raise TypeError(f"model settings {spec['settings']!r} are not a mapping")
        model = build_model(
            spec["name"], spec["settings"], len(ckpt["classes"]), norm["mean"], norm["std"]
        )
        model.load_state_dict(state)
    except (ExigoError, TypeError, ValueError, RuntimeError) as exc:
        # load_state_dict lists every mismatch over many lines: the first says enough.
        first = " ".join(str(exc).split("\n\t")[:2]).splitlines()[0].strip()
        raise unreadable(
            path,
            f"its weights do not fit its model '{spec['name']}' {spec['settings']}: {first[:300]}",
            "train",
        ) from None
    return model.to(device).eval(), ckpt
