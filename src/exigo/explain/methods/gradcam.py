"""gradcam: Grad-CAM on the model's last conv layer (Selvaraju et al. 2017, Captum), upsampled to
the image; signed evidence for the target class, coarse by design."""

from __future__ import annotations

from exigo.core.registry import SALIENCY_METHODS
from exigo.explain.method import SaliencyMethod


@SALIENCY_METHODS.register("gradcam")
class GradCam(SaliencyMethod):
    # Grad-CAM weights each channel of the last conv layer by its gradient averaged over
    # positions and keeps the positive part. Our heads are position-specific (flatten + linear),
    # so those averages can cancel: for some images (class 9 on MNIST, often) the weighted sum is
    # <= 0 everywhere and the map is blank. The figures say so.
    blank_note = "no positive\nGrad-CAM\nevidence"

    def attribute(self, model, x, target):
        from captum.attr import LayerAttribution, LayerGradCam

        if not getattr(model, "last_conv", None):
            from exigo.core.errors import ExigoError

            raise ExigoError(
                "saliency.methods: gradcam needs a conv layer whose output is larger than 1x1, "
                "and this model has none (name one in its last_conv); leave gradcam out"
            )
        layer = model.get_submodule(model.last_conv)
        cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
