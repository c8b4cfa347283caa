"""CC losses against the hand-computed checks of cc.md §9.1-9.13 (float64, atol 1e-6).

The instance loss is the core's ``nt_xent`` (cc.md §2.5); the cluster-level checks go
through the plugin's ``cc_cluster_contrast`` / ``cc_cluster_loss`` (cc.md §2.6).
"""

from __future__ import annotations

import math

import pytest
import torch
from deepclust_cc.losses import cc_cluster_contrast, cc_cluster_loss

from corekit import marginal_entropy_gap, nt_xent

ATOL = 1e-6
F64 = torch.float64


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def close(value: torch.Tensor, expected: float) -> bool:
    return abs(float(torch.as_tensor(value).detach()) - expected) <= ATOL


def entropy_term(ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return marginal_entropy_gap(ya.double()) + marginal_entropy_gap(yb.double())


def paper_total(ya: torch.Tensor, yb: torch.Tensor) -> float:
    """AAAI camera-ready form: L_cc − H(p^a) − H(p^b) = code form − 2 log M (cc.md D2)."""
    return float(cc_cluster_loss(ya, yb).detach()) - 2 * math.log(ya.shape[1])


# --- instance loss (core nt_xent) -----------------------------------------------------------

def test_9_1_identical_orthogonal_views():
    z = torch.eye(8, dtype=F64)[:4]
    assert close(nt_xent(z, z, 0.5), math.log(1 + 6 * math.exp(-2)))
    assert close(nt_xent(z, z, 0.5), 0.594438)


def test_9_2_self_term_is_excluded():
    z = torch.eye(8, dtype=F64)[:4]
    literal_eq2 = 1.033900
    assert close(math.log(2 + 6 * math.exp(-2)), literal_eq2)
    assert not close(nt_xent(z, z, 0.5), literal_eq2)


@pytest.mark.parametrize(("n", "expected"), [(4, 1.945910), (256, 6.236370)])
@pytest.mark.parametrize("tau", [0.5, 1.0, 0.1])
def test_9_3_all_identical_embeddings(n, expected, tau):
    z = torch.ones(n, 5, dtype=F64)
    assert close(nt_xent(z, z, tau), expected)


ZA = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
ZB = [[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]]


def test_9_4_handmade_pair():
    za, zb = t(ZA), t(ZB)
    assert close(nt_xent(za, zb, 0.5), 1.364730)
    assert close(nt_xent(za, zb, 1.0), 1.437549)
    assert close(nt_xent(zb, za, 0.5), 1.364730)
    assert close(nt_xent(3 * za, zb, 0.5), 1.364730)


# --- cluster loss (plugin) ------------------------------------------------------------------

Y_HARD = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]


def test_9_5_agreeing_disjoint_clusters():
    y = t(Y_HARD)
    assert close(cc_cluster_contrast(y, y), math.log(1 + 2 / math.e))
    assert close(cc_cluster_contrast(y, y), 0.551445)
    assert close(entropy_term(y, y), 0.0)
    assert close(cc_cluster_loss(y, y), 0.551445)
    assert abs(paper_total(y, y) - (-0.834850)) <= ATOL


def test_9_6_swapped_columns_are_not_invariant():
    ya = t(Y_HARD)
    yb = ya[:, [1, 0]]
    assert close(cc_cluster_contrast(ya, yb), math.log(2 + math.e))
    assert close(cc_cluster_contrast(ya, yb), 1.551445)


def test_9_7_uniform_rows():
    y = torch.full((6, 10), 0.1, dtype=F64)
    assert close(cc_cluster_loss(y, y), math.log(19))
    assert close(cc_cluster_loss(y, y), 2.944439)
    assert abs(paper_total(y, y) - (-1.660731)) <= ATOL


def test_9_8_constant_non_uniform_rows():
    y = t([[0.7, 0.3], [0.7, 0.3]])
    assert close(cc_cluster_contrast(y, y), math.log(3))
    assert close(marginal_entropy_gap(y), 0.082283)
    assert close(cc_cluster_loss(y, y), 1.263178)


YA_9 = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1]]
YB_9 = [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]]


def test_9_9_handmade_soft_assignments():
    ya, yb = t(YA_9), t(YB_9)
    assert close(entropy_term(ya, yb), 0.037006)
    assert close(cc_cluster_contrast(ya, yb), 1.221845)
    assert close(cc_cluster_loss(ya, yb), 1.258851)
    assert abs(paper_total(ya, yb) - (-0.938374)) <= ATOL
    assert close(cc_cluster_loss(yb, ya), 1.258851)


def test_9_10_through_softmax_with_finite_backward():
    la = t([[2, 0, 0], [0, 2, 0], [0, 0, 2], [1, 0, 0]]).requires_grad_(True)
    lb = t([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]]).requires_grad_(True)
    ya, yb = la.softmax(dim=1), lb.softmax(dim=1)
    assert close(cc_cluster_contrast(ya, yb), 1.326430)
    total = cc_cluster_loss(ya, yb)
    assert close(total, 1.342568)
    assert abs(paper_total(ya, yb) - (-0.854657)) <= ATOL
    total.backward()
    for grad in (la.grad, lb.grad):
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


def test_9_11_collapse_is_finite():
    y = t([[1.0, 0.0, 0.0]] * 4).requires_grad_(True)
    expected_cc = (2 * math.log(1 + 4 / math.e) + 4 * math.log(5)) / 6
    contrast = cc_cluster_contrast(y, y)
    assert close(contrast, expected_cc)
    total = cc_cluster_loss(y, y)
    assert torch.isfinite(total)
    assert close(total, expected_cc + 2 * math.log(3))
    assert close(total, 3.571794)
    contrast.backward()
    assert torch.isfinite(y.grad).all()


def test_9_11_collapse_entropy_backward_is_finite():
    y = t([[1.0, 0.0, 0.0]] * 4).requires_grad_(True)
    cc_cluster_loss(y, y).backward()
    assert torch.isfinite(y.grad).all()


def test_zero_column_has_cosine_zero_with_its_positive():
    """A dead cluster contributes log(2M−1) (cosine 0 with all 2M−1 others, cc.md P3)."""
    y = t([[1.0, 0.0], [1.0, 0.0]])
    expected = (2 * math.log(1 + 2 / math.e) + 2 * math.log(3)) / 4
    assert close(cc_cluster_contrast(y, y), expected)


BOUNDS = [(10, 2.031016, 2.944439), (15, 2.424858, 3.367296), (20, 2.706677, 3.663562),
          (200, 4.993259, 5.988961)]


def random_softmax(n: int, m: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    return (scale * torch.randn(n, m, generator=gen, dtype=F64)).softmax(dim=1)


@pytest.mark.parametrize(("m", "lower", "upper"), BOUNDS)
def test_9_12_bounds_on_random_softmax(m, lower, upper):
    """cc.md §9.12 with views that agree (each column's positive is its most similar column,
    as when both views come from one image batch): ℓ̂_k = log(1 + Σ_neg e^{T_neg − T_pos})
    then lies in [log(1 + (2M−2)/e), log(2M−1)]."""
    assert close(torch.tensor(math.log(1 + (2 * m - 2) / math.e)), lower)
    assert close(torch.tensor(math.log(2 * m - 1)), upper)
    gen = torch.Generator().manual_seed(m)
    for scale in (0.1, 1.0, 5.0, 50.0):
        ya = random_softmax(64, m, scale, gen)
        yb = (ya + 1e-3 * random_softmax(64, m, scale, gen)) / (1 + 1e-3)
        for pair in ((ya, ya), (ya, yb)):
            value = float(cc_cluster_contrast(*pair))
            assert lower - ATOL <= value <= upper + ATOL


@pytest.mark.parametrize(("m", "lower", "upper"), BOUNDS)
def test_9_12_bounds_on_independent_views(m, lower, upper):
    """For views that disagree, log(2M−1) is not an upper bound (check 9.6 itself gives
    ln(2 + e) > ln 3 for M = 2); every row is bounded by log(1 + (2M−2)e) instead."""
    gen = torch.Generator().manual_seed(m)
    for scale in (0.1, 1.0, 5.0, 50.0):
        ya, yb = random_softmax(64, m, scale, gen), random_softmax(64, m, scale, gen)
        value = float(cc_cluster_contrast(ya, yb))
        assert lower - ATOL <= value <= math.log(1 + (2 * m - 2) * math.e) + ATOL


def test_9_12_bounds_are_reached():
    m = 10
    hard = torch.eye(m, dtype=F64).repeat(3, 1)
    uniform = torch.full((7, m), 1 / m, dtype=F64)
    assert close(cc_cluster_contrast(hard, hard), math.log(1 + (2 * m - 2) / math.e))
    assert close(cc_cluster_contrast(uniform, uniform), math.log(2 * m - 1))


def test_9_13_total_objective():
    instance = nt_xent(t(ZA), t(ZB), 0.5)
    cluster = cc_cluster_loss(t(YA_9), t(YB_9))
    assert close(instance + cluster, 2.623581)


def test_temperature_scales_the_contrast():
    y = t(Y_HARD)
    assert close(cc_cluster_contrast(y, y, temperature=0.5), math.log(1 + 2 * math.exp(-2)))
