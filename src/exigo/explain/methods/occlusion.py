"""occlusion: the drop in the target logit when a window of pixels is set to black (Zeiler and
Fergus 2014, Captum's Occlusion); signed evidence for the target class."""

from __future__ import annotations

from pydantic import Field

from exigo.core.fields import PositiveInt
from exigo.core.registry import SALIENCY_METHODS, EntrySettings
from exigo.explain.method import SaliencyMethod


class OcclusionSettings(EntrySettings):
    window: PositiveInt = Field(4, description="side of the square window, in pixels")
    stride: PositiveInt = Field(2, description="pixels between windows")


@SALIENCY_METHODS.register("occlusion", OcclusionSettings)
class Occlusion(SaliencyMethod):
    def attribute(self, model, x, target):
        from captum.attr import Occlusion as CaptumOcclusion

        w, s = self.settings.window, self.settings.stride
        return CaptumOcclusion(model).attribute(
            x, sliding_window_shapes=(x.shape[1], w, w), strides=(x.shape[1], s, s), target=target
        )
