"""Device and numeric precision choices."""

from __future__ import annotations

import contextlib

import torch

from corekit.errors import RecipeError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"train.device = {name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None for fp32). ``auto``: bf16 where supported, else fp32."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" else None
    if name not in PRECISIONS:
        raise RecipeError(f"train.precision: {name!r} is not one of fp32, bf16, fp16, auto")
    if name == "fp16" and device.type != "cuda":
        raise RecipeError("train.precision = 'fp16' needs CUDA; use 'bf16' on the CPU")
    return PRECISIONS[name]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
