"""The parts every exigo classifier is made of (torch): input normalisation, the classifier shell
that the architecture entries fill with named layers, and the conv block they share.

Every model takes inputs in [0, 1] shaped (B, C, H, W), normalises them itself (so saliency maps
are gradients with respect to the real pixels), returns logits, exposes its penultimate features
through `features()`, names its last conv layer in `last_conv` for Grad-CAM, and lists the
blocks that hold its weights, input to output, in `blocks()`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std per channel; mean and std are one number per channel (or one for all)."""

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """normalise -> `layers` in order (up to the penultimate features) -> dropout -> head.

    `layers` are (name, module) pairs; a module given twice under one name (a pooling layer, a
    ReLU) is one child, applied at each place. The children's names are the checkpoint's keys and
    the blocks the randomisation check re-initialises, top down."""

    def __init__(
        self,
        mean: float | Sequence[float],
        std: float | Sequence[float],
        layers: Sequence[tuple[str, nn.Module]],
        head: nn.Module,
        last_conv: str,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.order = tuple(name for name, _ in layers)
        for name, layer in layers:
            if name not in self._modules:
                self.add_module(name, layer)
            elif self._modules[name] is not layer:
                raise ValueError(f"two different layers named {name!r}")
        if dropout is not None:
            self.dropout = nn.Dropout(dropout)
        self.head = head
        self.last_conv = last_conv  # dotted module name of the last conv layer (Grad-CAM's target)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, D) penultimate features."""
        x = self.normalize(x)
        for name in self.order:
            x = self._modules[name](x)
        return x

    def blocks(self) -> list[str]:
        """Names of the children that hold weights, input to output (normalize left out)."""
        return weighted_children(self, skip=("normalize",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        if "dropout" in self._modules:
            f = self.dropout(f)
        return self.head(f)  # (B, num_classes) logits


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 same-padding conv, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class Residual(nn.Module):
    """x + f(x): a skip connection around `f`, which keeps the shape."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class Scale(nn.Module):
    """Multiplies by a fixed number (ResNet-9's head: logits x 0.125); no weights."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def weighted_children(module: nn.Module, prefix: str = "", skip: Sequence[str] = ()) -> list[str]:
    """Dotted names (under `prefix`) of `module`'s children that hold parameters, in the order
    they were registered (input to output for every model exigo builds or wraps)."""
    return [
        prefix + name
        for name, child in module.named_children()
        if name not in skip and any(True for _ in child.parameters())
    ]
