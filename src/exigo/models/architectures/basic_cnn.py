"""basic_cnn: the original design, four 3x3 valid convs (1->10->7->5->1 channels), then a linear head
on the 400 pixels of the last map. No settings.

One change from the original: no ReLU after the last conv. Its single channel is the whole
400-d embedding, and with a ReLU there one seed in seven (42 included) started with all 400
features at exactly zero for every image: no gradient reaches the convs and the model never
learns (accuracy stays at chance). The linear head needs no ReLU in front of it.

Other sizes: the head takes the (H - 8) x (W - 8) pixels of the last map, so it adapts to any
image from 12x12 to 64x64 (beyond, that head grows past 3M weights per class: choose `cnn`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exigo.core.registry import MODELS, NoSettings

if TYPE_CHECKING:
    from exigo.models.layers import Classifier


MIN_SIDE, MAX_SIDE = 12, 64


@MODELS.register("basic_cnn")
def build(settings: NoSettings, num_classes: int, mean, std, shape=(1, 28, 28)) -> Classifier:
    """(B, C, 28, 28) -> 26 -> 24 -> 22 -> (B, 1, 20, 20) -> 400 features -> classes."""
    from torch import nn

    from exigo.core.errors import ExigoError
    from exigo.models.layers import Classifier

    channels, height, width = shape
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise ExigoError(
            f"model.name: basic_cnn takes images from {MIN_SIDE}x{MIN_SIDE} to {MAX_SIDE}x{MAX_SIDE}"
            f" (its head reads every pixel of its last map); these are {width}x{height}: choose "
            "model.name cnn, or set data.size"
        )
    conv1 = nn.Conv2d(channels, 10, 3)
    conv2 = nn.Conv2d(10, 7, 3)
    conv3 = nn.Conv2d(7, 5, 3)
    conv4 = nn.Conv2d(5, 1, 3)
    relu = nn.ReLU()
    head = nn.Linear((height - 8) * (width - 8), num_classes)
    layers = [("conv1", conv1), ("relu", relu), ("conv2", conv2), ("relu", relu)]
    layers += [("conv3", conv3), ("relu", relu), ("conv4", conv4), ("flatten", nn.Flatten())]
    return Classifier(mean, std, layers, head, last_conv="conv4")
