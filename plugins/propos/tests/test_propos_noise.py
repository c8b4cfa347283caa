"""The latent noise head (specs/hadis.md §2.3, D6, D7) and DSA with σ > 0 (§9 C3)."""

from __future__ import annotations

import pytest
import torch
from deepclust_propos import LatentGaussianNoise, psa


def test_noise_is_off_before_start_epoch_and_on_after() -> None:
    head = LatentGaussianNoise(8, std=0.5, start_epoch=3).train()
    q = torch.randn(16, 8)
    for epoch in range(3):
        head.on_epoch_start(epoch, 10)
        assert head.sigma == 0.0
        assert torch.equal(head(q), q)
    head.on_epoch_start(3, 10)
    assert head.sigma == 0.5
    z = head(q)
    assert not torch.equal(z, q)
    assert (z - q).std().item() == pytest.approx(0.5, rel=0.3)


def test_noise_is_drawn_per_call_and_off_in_eval_mode() -> None:
    head = LatentGaussianNoise(8, std=0.1).train()
    q = torch.zeros(4, 8)
    assert not torch.equal(head(q), head(q))
    assert torch.equal(head.eval()(q), q)


def test_noise_adds_to_the_raw_projection_and_keeps_its_width() -> None:
    head = LatentGaussianNoise(256, std=0.001)
    assert head.out_dim == 256
    assert head.sigma == 0.001
    q = 1000 * torch.ones(2, 256)
    assert ((head(q) - q).abs().max().item()) < 0.01  # σ is absolute, not relative to ‖q‖


def test_negative_std_is_rejected() -> None:
    with pytest.raises(ValueError, match="std"):
        LatentGaussianNoise(4, std=-1.0)


def unit(*degrees: float) -> torch.Tensor:
    radians = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([radians.cos(), radians.sin()], dim=1).float()


def test_c3_dsa_with_sigma_is_seeded_and_sigma_zero_reproduces_c3() -> None:
    k = unit(0, 60, 90, 180)
    p = torch.cat([2 * unit(20), unit(25), 0.5 * unit(140), unit(200)])

    def dsa(std: float, seed: int) -> float:
        head = LatentGaussianNoise(2, std=std).train()
        torch.manual_seed(seed)
        return psa(head(p), k).item()

    assert dsa(0.0, 0) == pytest.approx(-1.670662, abs=1e-5)
    assert dsa(0.05, 0) == dsa(0.05, 0)
    assert dsa(0.05, 0) != dsa(0.05, 1)
    assert dsa(0.05, 0) != pytest.approx(-1.670662, abs=1e-5)
    assert dsa(1e-6, 0) == pytest.approx(-1.670662, abs=1e-4)
