"""One seed helper, one device helper."""

from __future__ import annotations

import random

import numpy as np
import torch

from exigo.errors import ExigoError


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit choice must be available."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ExigoError("train.device: cuda is not available here; use auto or cpu")
    if name == "mps" and not has_mps:
        raise ExigoError("train.device: mps is not available here; use auto or cpu")
    return torch.device(name)
