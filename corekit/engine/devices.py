"""Device and numeric precision choices."""

from __future__ import annotations

import contextlib
import functools
import platform
import warnings
from pathlib import Path

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


_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX-512/AMX, Arm v8.6 BF16


@functools.cache
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (the ``flags`` line on x86, ``Features`` on Arm) of
    ``/proc/cpuinfo``; empty where the file is missing."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return frozenset()
    flags = next((line for line in lines if line.startswith(("flags", "Features"))), "")
    return frozenset(flags.split(":", 1)[-1].split())


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's ``model name`` in ``/proc/cpuinfo`` (``platform.machine()`` where missing)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    model = next((line for line in lines if line.startswith("model name")), "")
    return model.split(":", 1)[-1].strip() or platform.machine()


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU runs bf16 arithmetic natively (False where ``/proc/cpuinfo`` is
    missing). Without it torch emulates bf16: on an AVX2-only AMD EPYC a 2048² bf16 matmul ran
    about 500× slower than in fp32 (``bench/efficiency.py``)."""
    return bool(_NATIVE_BF16_FLAGS & cpu_flags(cpuinfo))


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None for fp32). ``auto``: bf16 where it runs natively (CUDA with bf16
    support, a CPU with bf16 instructions), fp16 on other CUDA devices, else fp32."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    if name not in PRECISIONS:
        raise RecipeError(f"train.precision: {name!r} is not one of fp32, bf16, fp16, auto")
    if name == "fp16" and device.type != "cuda":
        raise RecipeError("train.precision = 'fp16' needs CUDA; use 'bf16' on the CPU")
    if name == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            "train.precision = 'bf16' on a CPU without bf16 instructions (no avx512_bf16/amx_bf16"
            " flag): torch emulates it, often 10-500x slower than fp32; use precision = 'fp32'"
            " or 'auto'",
            stacklevel=2,
        )
    return PRECISIONS[name]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
