"""The parts every exigo classifier is made of (torch): input normalisation, the classifier shell
that the architecture entries fill with named layers, and the conv block they share.

Every model takes inputs in [0, 1] shaped (B, C, H, W), normalises them itself (so saliency maps
are gradients with respect to the real pixels), returns logits, exposes its penultimate features
through `features()`, and names its last conv layer in `last_conv` for Grad-CAM.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """normalise -> `layers` in order (up to the penultimate features) -> dropout -> head.

    `layers` are (name, module) pairs; a module given twice under one name (a pooling layer, a
    ReLU) is one child, applied at each place. The children's names are the checkpoint's keys and
    the blocks the randomisation check re-initialises, top down."""

    def __init__(
        self,
        mean: float,
        std: float,
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
