"""resnet: ResNet-9, a residual network for 32x32 colour images (CIFAR-style stem: a 3x3 conv at
stride 1, no max-pool); 94 % on CIFAR-10 in 24 epochs in its published recipe. ~6.6M parameters
and ~0.4 GMAC per 32x32 image at the default width: a GPU model.

The design is David Page's DAWNBench entry, "How to train your ResNet" (Myrtle.ai, 2018, part 4,
"Architecture"; github.com/davidcpage/cifar10-fast), with his channel counts as multiples of
`width` (64):

    prep    conv-BN-ReLU, width                              (B, 64, 32, 32)
    layer1  conv-BN-ReLU 2*width, max-pool 2, + residual     (B, 128, 16, 16)
            (two conv-BN-ReLU)
    layer2  conv-BN-ReLU 4*width, max-pool 2                 (B, 256, 8, 8)
    layer3  conv-BN-ReLU 8*width, max-pool 2, + residual     (B, 512, 4, 4)  <- last_conv
    pool    global max-pool                                  (B, 512)        <- features
    head    linear (no bias), logits x 0.125

His recipe, in exigo's params: train.optimizer sgd (Nesterov: momentum 0.9), batch_size 512,
weight_decay 5e-4, lr 0.4 with schedule onecycle (he ramps linearly to the peak at epoch 5 of
24, then down to 0), epochs 24, augment crop_flip_cutout (crops, flips and his 8x8 cutout),
label_smoothing 0.2 (a later part of the series). benchmarks/time_to_accuracy.py --dataset cifar10 runs it.

Other sizes: the global pool takes whatever the three halvings leave, so any image from 8x8 up
and one or three channels work; Grad-CAM's layer3 is larger than 1x1 from 16x16 up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from exigo.core.fields import PositiveInt
from exigo.core.registry import MODELS, EntrySettings

if TYPE_CHECKING:
    from exigo.models.layers import Classifier

HEAD_SCALE = 0.125  # Page's final Mul(0.125): smaller logits early on, no learnt temperature


class ResnetSettings(EntrySettings):
    width: PositiveInt = Field(
        64, description="channels of the first conv; the three layers have 2x, 4x and 8x"
    )


@MODELS.register("resnet", ResnetSettings)
def build(settings: ResnetSettings, num_classes: int, mean, std, shape=(3, 32, 32)) -> Classifier:
    """(B, C, H, W) -> prep -> three layers, each halving the image -> (B, 8 * width) -> classes."""
    from torch import nn

    from exigo.models.layers import Classifier, Residual, Scale, conv_block

    w, channels = settings.width, shape[0]

    def layer(c_in: int, c_out: int, residual: bool) -> nn.Sequential:
        parts = [conv_block(c_in, c_out), nn.MaxPool2d(2)]
        if residual:
            parts.append(
                Residual(nn.Sequential(conv_block(c_out, c_out), conv_block(c_out, c_out)))
            )
        return nn.Sequential(*parts)

    layers = [
        ("prep", conv_block(channels, w)),
        ("layer1", layer(w, 2 * w, residual=True)),
        ("layer2", layer(2 * w, 4 * w, residual=False)),
        ("layer3", layer(4 * w, 8 * w, residual=True)),
        ("pool", nn.AdaptiveMaxPool2d(1)),  # his MaxPool2d(4) at 32x32, any size here
        ("flatten", nn.Flatten()),
    ]
    head = nn.Sequential(nn.Linear(8 * w, num_classes, bias=False), Scale(HEAD_SCALE))
    return Classifier(mean, std, layers, head, last_conv="layer3")
