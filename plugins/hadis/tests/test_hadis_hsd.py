"""HSD against specs/hadis.md §9 C1-C2: per-anchor split, ν, w, ℓ, gradient signs and targets."""

from __future__ import annotations

import pytest
import torch
from deepclust_hadis import HSD, distances, hsd, hsd_anchor_losses, mine_hard_pairs


def unit(*degrees: float) -> torch.Tensor:
    """Rows ``u(θ) = (cos θ, sin θ)``, θ in degrees (spec §9 helper)."""
    radians = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([radians.cos(), radians.sin()], dim=1).float()


C1_K = unit(0, 60, 90, 180)
C1_P = torch.cat([2 * unit(20), unit(25), 0.5 * unit(140), unit(200)])
C2_K = unit(0, 60, 90)
C2_P = unit(20, 25, 270)


def test_c1_thresholds_and_split() -> None:
    pairs = mine_hard_pairs(C1_K, C1_P)
    assert pairs.threshold.tolist() == pytest.approx([0.347296, 0.601412, 0.845237, 0.347296],
                                                     abs=1e-5)
    positive = [set(torch.nonzero(row).flatten().tolist()) for row in pairs.positive]
    assert positive == [{0}, {1, 2}, {1, 2}, {3}]
    assert pairs.has_negative.tolist() == [True] * 4


def test_c1_hardest_pairs_and_weights() -> None:
    pairs = mine_hard_pairs(C1_K, C1_P)
    assert pairs.pos_index.tolist() == [0, 2, 1, 3]
    assert pairs.nu_pos.tolist() == pytest.approx([0.347296, 1.285575, 1.074599, 0.347296],
                                                  abs=1e-5)
    assert pairs.w_pos.tolist() == pytest.approx([0.347296, 0.767937, 0.556961, 0.347296],
                                                 abs=1e-5)
    assert pairs.neg_index.tolist() == [1, 0, 0, 2]
    assert pairs.nu_neg.tolist() == pytest.approx([0.432879, 0.684040, 1.147153, 0.684040],
                                                  abs=1e-5)
    assert pairs.w_neg.tolist() == pytest.approx([0.567121, 0.315960, 0.267061, 0.730173],
                                                 abs=1e-5)


def test_c1_losses() -> None:
    losses = hsd_anchor_losses(mine_hard_pairs(C1_K, C1_P), 0.5)
    assert losses.tolist() == pytest.approx([0.576044, 1.736066, 1.027380, 0.384405], abs=1e-5)
    assert hsd(C1_K, C1_P).item() == pytest.approx(0.930974, abs=1e-5)
    # by hand for anchor 0: softplus(0.347296²/0.5 − 0.567121·0.432879/0.5)
    by_hand = torch.nn.functional.softplus(torch.tensor(0.241229 - 0.490985)).item()
    assert by_hand == pytest.approx(0.576044, abs=1e-5)


def test_c1_gradient_signs() -> None:
    p = C1_P.clone().requires_grad_()
    pairs = mine_hard_pairs(C1_K, p)
    pairs.nu_pos.retain_grad()
    pairs.nu_neg.retain_grad()
    hsd_anchor_losses(pairs, 0.5).mean().backward()
    assert (pairs.nu_pos.grad > 0).all()
    assert (pairs.nu_neg.grad < 0).all()
    assert torch.isfinite(p.grad).all()


def test_gradient_goes_to_the_candidates_predictions_not_the_teacher() -> None:
    k = C1_K.clone().requires_grad_()
    p = C1_P.clone().requires_grad_()
    pairs = mine_hard_pairs(k, p)
    assert not pairs.w_pos.requires_grad and not pairs.w_neg.requires_grad
    hsd(k, p).backward()
    assert k.grad is None
    # every prediction of C1 is some anchor's j⁺ or j⁻, so each receives gradient
    assert (p.grad.abs().sum(dim=1) > 0).all()


def test_gradient_skips_predictions_that_are_never_selected() -> None:
    # anchor 0 positive only itself; candidate 2 sits far from every anchor's hard pair
    k = unit(0, 5, 180)
    p = unit(1, 6, 120).requires_grad_()
    pairs = mine_hard_pairs(k, p)
    selected = set(pairs.pos_index.tolist()) | set(
        pairs.neg_index[pairs.has_negative].tolist())
    hsd(k, p).backward()
    for j in range(3):
        assert (p.grad[j].abs().sum().item() > 0) == (j in selected)


def test_c2_anchor_without_negatives() -> None:
    p = C2_P.clone().requires_grad_()
    pairs = mine_hard_pairs(C2_K, p)
    assert pairs.has_negative.tolist() == [True, True, False]
    assert pairs.nu_pos[2].item() == pytest.approx(2.0, abs=1e-5)
    assert pairs.w_pos[2].item() == pytest.approx(2.0, abs=1e-5)
    assert pairs.w_neg[2].item() == 0.0
    assert pairs.nu_neg[2].item() == 0.0
    losses = hsd_anchor_losses(pairs, 0.5)
    assert losses.tolist() == pytest.approx([0.576044, 5.038349, 8.000335], abs=1e-5)
    loss = hsd(C2_K, p)
    assert loss.item() == pytest.approx(4.538243, abs=1e-5)
    loss.backward()
    assert torch.isfinite(p.grad).all()


def test_teacher_diagonal_is_exactly_zero_and_distances_are_floored() -> None:
    k = torch.nn.functional.normalize(torch.randn(64, 32), dim=1)
    d = distances(k, k)
    assert d.min().item() == pytest.approx(1e-6, rel=1e-5)  # sqrt of the 1e-12 clamp
    pairs = mine_hard_pairs(k, k.clone())
    # with p = k every S_ii is the 1e-6 floor; only the anchor (T_ii = 0) is positive
    assert pairs.pos_index.tolist() == list(range(64))
    assert pairs.w_pos.max().item() < 1e-3  # fp32 rounding of S_ii, spec P3
    assert torch.equal(pairs.w_pos, pairs.nu_pos.detach())  # T_ii is exactly 0


def test_ties_go_to_the_positive_side() -> None:
    # exactly representable rows: anchor 0's own distance S_00 = √2 equals T_01 = √2
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    p = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    pairs = mine_hard_pairs(k, p)
    assert pairs.positive[0].tolist() == [True, True, False]
    assert pairs.pos_index[0].item() == 1
    assert pairs.nu_pos[0].item() == pytest.approx(2.0, abs=1e-6)
    assert pairs.w_pos[0].item() == pytest.approx(2.0 - 2**0.5, abs=1e-6)
    assert pairs.neg_index[0].item() == 2


def test_hsd_temperature_scales_the_margin() -> None:
    pairs = mine_hard_pairs(C1_K, C1_P)
    margin = pairs.w_pos * pairs.nu_pos - pairs.w_neg * pairs.nu_neg
    expected = torch.nn.functional.softplus(margin / 0.04).mean()
    assert hsd(C1_K, C1_P, temperature=0.04).item() == pytest.approx(expected.item(), abs=1e-5)


def test_hsd_class_defaults_and_needs() -> None:
    loss = HSD()
    assert (loss.pred, loss.target, loss.temperature) == ("pred", "proj", 0.5)
    needs = {(n.kind, n.name, n.branch) for n in loss.needs()}
    assert ("output", "pred", "online") in needs and ("output", "proj", "target") in needs
