"""SCAN's loss (Eq. 2, arXiv 2005.12320) on hand-computed examples, and its adapter."""

from __future__ import annotations

import math

import pytest
import torch
from deepclust_scan.losses import SCANLoss, scan_loss

from corekit import Need

ANCHORS = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
NEIGHBOURS = torch.tensor([[0.5, 0.5], [0.5, 0.5]])


def test_consistency_term_on_a_2x2_example():
    # <Φ(X1), Φ(k1)> = 0.5, <Φ(X2), Φ(k2)> = 0.5: −mean log = log 2
    assert scan_loss(ANCHORS, NEIGHBOURS, entropy_weight=0.0).item() == pytest.approx(math.log(2))


def test_entropy_term_adds_lambda_times_sum_p_log_p_of_the_batch_marginal():
    # Φ' = (0.75, 0.25): Σ Φ'_c log Φ'_c = 0.75 log 0.75 + 0.25 log 0.25
    plogp = 0.75 * math.log(0.75) + 0.25 * math.log(0.25)
    value = scan_loss(ANCHORS, NEIGHBOURS, entropy_weight=5.0).item()
    assert value == pytest.approx(math.log(2) + 5.0 * plogp)  # = 0.693147 - 2.811676
    assert value == pytest.approx(-2.118529, abs=1e-6)


def test_entropy_term_prefers_a_spread_marginal_at_equal_agreement():
    # both batches agree perfectly with their neighbours; only the marginals differ
    collapsed = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    spread = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert scan_loss(collapsed, collapsed, 0.0).item() == pytest.approx(
        scan_loss(spread, spread, 0.0).item())
    assert scan_loss(spread, spread, 5.0).item() == pytest.approx(-5 * math.log(2))
    assert scan_loss(collapsed, collapsed, 5.0).item() == pytest.approx(0.0, abs=1e-6)


def test_disagreeing_neighbours_cost_more_and_the_log_is_guarded():
    a = torch.tensor([[1.0, 0.0]])
    assert scan_loss(a, torch.tensor([[0.0, 1.0]]), 0.0).item() == pytest.approx(
        -math.log(1e-8))
    assert torch.isfinite(scan_loss(a, torch.tensor([[0.0, 1.0]]), 5.0))


def test_gradient_reaches_both_anchors_and_neighbours():
    a = ANCHORS.clone().requires_grad_()
    n = NEIGHBOURS.clone().requires_grad_()
    scan_loss(a, n).backward()
    assert a.grad.abs().sum() > 0 and n.grad.abs().sum() > 0


def test_the_adapter_declares_the_head_probabilities_and_the_neighbour_state():
    needs = SCANLoss(head="h", neighbours="nb").needs()
    assert needs == [Need.output("h", reads="probs"), Need.state("nb", "scan_neighbours")]
