"""What a saliency method is to exigo (torch-free, so the registry loads without torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from exigo.core.registry import EntrySettings

if TYPE_CHECKING:
    import torch
    from torch import nn


class SaliencyMethod:
    """One attribution method, registered with `@SALIENCY_METHODS.register(name, Settings)`.

    `attribute` maps a batch of inputs (B, C, H, W) in [0, 1] and target classes (B,) to
    attributions of the same shape, or (B, 1, H, W); exigo sums them over channels into (B, H, W)
    pixel maps, batches the calls, and holds the weights' gradients off around them."""

    #: rank pixels by |map| (a sensitivity, whose sign says nothing), not by the signed evidence
    rank_by_magnitude: ClassVar[bool] = False
    #: draws random numbers: the global generator is seeded (base.seed) before each call
    seeded: ClassVar[bool] = False
    #: what the figures write on a map that is blank for a known reason (None: nothing)
    blank_note: ClassVar[str | None] = None

    def __init__(self, settings: EntrySettings) -> None:
        self.settings = settings

    @property
    def copies(self) -> int:
        """Forward passes each image costs in one call (Integrated Gradients' steps): the batch
        holds saliency.batch_size / copies images."""
        return 1

    def attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
