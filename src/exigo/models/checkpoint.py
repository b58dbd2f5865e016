"""Checkpoints: the weights plus everything needed to rebuild the model from the registry."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from exigo.core.errors import ExigoError
from exigo.core.outputs import load_torch, require, save_torch, unreadable
from exigo.core.registry import MODELS, EntrySettings

CHECKPOINT_FORMAT = "exigo-checkpoint/1"
DEFAULT_SHAPE = (1, 28, 28)  # checkpoints of exigo before any image size: MNIST's
Norm = float | Sequence[float]


def build_model(
    name: str,
    settings: EntrySettings | dict[str, Any],
    num_classes: int,
    mean: Norm,
    std: Norm,
    shape: Sequence[int] = DEFAULT_SHAPE,
) -> torch.nn.Module:
    """The model `name` for inputs of `shape` (C, H, W) in [0, 1]: a registered one with its
    settings (an EntrySettings, or a checkpoint's dict), or timm's / a user's (`timm:<name>`,
    `my_pkg.my_models:Net`), whose settings are the keyword arguments model.args gives.

    Every model normalises its inputs itself, returns logits, and has `features(x)` (the
    penultimate features) and `last_conv` (Grad-CAM's layer)."""
    shape = tuple(int(v) for v in shape)
    if name not in MODELS:
        from exigo.models.external import build_external

        args = settings.model_dump() if isinstance(settings, EntrySettings) else dict(settings)
        return build_external(name, args, num_classes, mean, std, shape)
    entry = MODELS.get(name)
    if not isinstance(settings, EntrySettings):
        try:
            settings = entry.parse(settings)
        except ValueError as exc:
            raise ExigoError(f"model.{entry.key}: {' '.join(str(exc).split())}") from None
    return entry.target(settings, num_classes=num_classes, mean=mean, std=std, shape=shape)


class ModelCodeError(ExigoError):
    """A model named by code (timm:<name>, an import path) cannot be built: the package or the
    module is missing, or the class refused the arguments. Raised as is by load_checkpoint."""


def settings_record(settings: EntrySettings | dict[str, Any]) -> dict[str, Any]:
    """A model's settings as the checkpoint keeps them (plain lists and numbers); a timm or user
    model's are its keyword arguments (model.args)."""
    if isinstance(settings, EntrySettings):
        return settings.model_dump(mode="json")
    return dict(settings)


def save_checkpoint(path: Path | str, state: dict[str, torch.Tensor], **meta: Any) -> None:
    """Weights plus everything needed to rebuild the model: loadable with weights_only=True."""
    save_torch(path, {"format": CHECKPOINT_FORMAT, "state_dict": state, **meta})


def load_checkpoint(
    path: Path | str, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from its checkpoint alone; returns (model in eval mode, checkpoint meta).

    Anything short of a complete checkpoint whose settings fit its weights (damaged bytes, keys
    missing, metadata that disagrees with the weights) is one `unreadable` line."""
    path = Path(path)
    ckpt = load_torch(path, "train")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ExigoError(f"{path}: not an exigo checkpoint; run dvc repro train again")
    keys = ["state_dict", "model.name", "model.settings", "classes", "normalization.mean"]
    keys += ["normalization.std", "epoch", "score"]
    if ckpt.get("score") is not None:  # None in the untrained init.pt
        keys += ["score.metric", "score.value"]
    require(ckpt, keys, path, "train")
    spec, norm, state = ckpt["model"], ckpt["normalization"], ckpt.pop("state_dict")
    try:
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise TypeError("the weights are not a dict of tensors")
        if not isinstance(spec["settings"], dict):
            raise TypeError(f"model settings {spec['settings']!r} are not a mapping")
        shape = ckpt.get("shape", DEFAULT_SHAPE)
        model = build_model(
            spec["name"], spec["settings"], len(ckpt["classes"]), norm["mean"], norm["std"], shape
        )
        model.load_state_dict(state)
    except ModelCodeError:
        raise  # the user's model code is gone or broken: its own line says what to do
    except (ExigoError, TypeError, ValueError, RuntimeError) as exc:
        # load_state_dict lists every mismatch over many lines: the first says enough.
        first = " ".join(str(exc).split("\n\t")[:2]).splitlines()[0].strip()
        raise unreadable(
            path,
            f"its weights do not fit its model '{spec['name']}' {spec['settings']}: {first[:300]}",
            "train",
        ) from None
    return model.to(device).eval(), ckpt
