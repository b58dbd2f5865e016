"""integrated_gradients: Integrated Gradients from the black (empty) image (Sundararajan et al.
2017, Captum); signed evidence for the target class."""

from __future__ import annotations

from pydantic import Field

from exigo.core.fields import Int
from exigo.core.registry import SALIENCY_METHODS, EntrySettings
from exigo.explain.method import SaliencyMethod


class IntegratedGradientsSettings(EntrySettings):
    steps: Int = Field(8, ge=2, le=1000, description="steps from the black image (Gauss-Legendre)")


@SALIENCY_METHODS.register("integrated_gradients", IntegratedGradientsSettings)
class IntegratedGradients(SaliencyMethod):
    @property
    def copies(self) -> int:
        return self.settings.steps

    def attribute(self, model, x, target):
        import torch
        from captum.attr import IntegratedGradients as CaptumIG

        return CaptumIG(model).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=self.settings.steps
        )
