"""gradient: the vanilla gradient of the target-class logit with respect to the pixels (Simonyan et
al. 2013, Captum's Saliency); pixels ranked by magnitude."""

from __future__ import annotations

from exigo.core.registry import SALIENCY_METHODS
from exigo.explain.method import SaliencyMethod


@SALIENCY_METHODS.register("gradient")
class Gradient(SaliencyMethod):
    rank_by_magnitude = True

    def attribute(self, model, x, target):
        from captum.attr import Saliency

        return Saliency(model).attribute(x, target=target, abs=False)
