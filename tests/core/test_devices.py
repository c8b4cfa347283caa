"""Precision choice: ``auto`` picks bf16 only where it runs natively; emulated bf16 warns."""

from __future__ import annotations

import pytest
import torch

from corekit.engine import devices
from corekit.errors import RecipeError

CPU = torch.device("cpu")


def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path):
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2\n")
    sapphire = tmp_path / "amx"
    sapphire.write_text("flags\t\t: avx2 avx512f avx512_bf16 amx_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("Features\t: fp asimd sve bf16 i8mm\n")
    assert not devices.cpu_has_native_bf16(avx2)
    assert devices.cpu_has_native_bf16(sapphire) and devices.cpu_has_native_bf16(arm)
    assert not devices.cpu_has_native_bf16(tmp_path / "missing")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, native):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    expected = torch.bfloat16 if native else None
    assert devices.resolve_precision("auto", CPU) == expected


def test_emulated_bf16_warns_and_bad_precisions_fail(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulates"):
        assert devices.resolve_precision("bf16", CPU) == torch.bfloat16
    with pytest.raises(RecipeError, match="needs CUDA"):
        devices.resolve_precision("fp16", CPU)
    with pytest.raises(RecipeError, match="not one of"):
        devices.resolve_precision("fp8", CPU)
    assert devices.resolve_precision("fp32", CPU) is None
