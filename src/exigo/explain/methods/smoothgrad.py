"""smoothgrad: the gradient averaged over noisy copies of the image (Smilkov et al. 2017, Captum's
NoiseTunnel); pixels ranked by magnitude."""

from __future__ import annotations

from pydantic import Field

from exigo.core.fields import Float, Int
from exigo.core.registry import SALIENCY_METHODS, EntrySettings
from exigo.explain.method import SaliencyMethod


class SmoothGradSettings(EntrySettings):
    samples: Int = Field(8, ge=1, le=1000, description="noisy copies per image")
    noise: Float = Field(0.15, gt=0, le=1, description="noise std in pixel units (pixels are 0..1)")


@SALIENCY_METHODS.register("smoothgrad", SmoothGradSettings)
class SmoothGrad(SaliencyMethod):
    rank_by_magnitude = True
    seeded = True  # NoiseTunnel draws its noise from the global generator

    @property
    def copies(self) -> int:
        return self.settings.samples

    def attribute(self, model, x, target):
        from captum.attr import NoiseTunnel, Saliency

        return NoiseTunnel(Saliency(model)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=self.settings.samples,
            stdevs=self.settings.noise,
            target=target,
            abs=False,
        )
