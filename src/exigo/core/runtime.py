"""One seed helper, one device helper, one warning line."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch

from exigo.core.errors import ExigoError


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # = use_deterministic_algorithms(True, warn_only=True), without its import of torch._inductor
    # (2.6 s a stage here) to configure a compiler that exigo never runs
    torch.set_deterministic_debug_mode("warn")


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


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively (emulated bf16 is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:  # Linux: avx512_bf16 / amx_bf16 on x86, bf16 in an aarch64 CPU's features
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(flags))


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.precision`: None for fp32; `auto` takes bf16 only where the
    device runs it natively (CUDA with bf16, CPUs with AVX512-BF16/AMX), fp32 elsewhere."""
    if name == "bf16" or (name == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def warn(message: str) -> None:
    """One line on stderr, `warning: ...`; the stage goes on."""
    print(f"warning: {message}", file=sys.stderr)
