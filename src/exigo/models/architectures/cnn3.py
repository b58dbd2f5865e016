"""cnn3: three conv-BN-ReLU-pool blocks of `width`, 2x`width` and 4x`width` channels, then global
average pooling into the classifier: deeper than `cnn`, with fewer parameters."""

from __future__ import annotations

from pydantic import Field

from exigo.core.fields import Float, PositiveInt
from exigo.core.registry import MODELS, EntrySettings


class Cnn3Settings(EntrySettings):
    width: PositiveInt = Field(32, description="channels of the first block")
    dropout: Float = Field(0.25, ge=0, lt=1, description="dropout before the head")


@MODELS.register("cnn3", Cnn3Settings)
def build(settings: Cnn3Settings, num_classes: int, mean, std, shape=(1, 28, 28)):
    """(B, C, H, W) -> three blocks, each halving the image -> (B, 4 * width) -> classes."""
    from torch import nn

    from exigo.models.layers import Classifier, conv_block

    w, channels = settings.width, shape[0]
    conv1, conv2, conv3 = conv_block(channels, w), conv_block(w, 2 * w), conv_block(2 * w, 4 * w)
    pool = nn.MaxPool2d(2)
    layers = [("conv1", conv1), ("pool", pool), ("conv2", conv2), ("pool", pool)]
    layers += [("conv3", conv3), ("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
    head = nn.Linear(4 * w, num_classes)
    return Classifier(mean, std, layers, head, last_conv="conv3", dropout=settings.dropout)
