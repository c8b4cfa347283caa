"""The three losses against the hand-computed values of specs/cidfd.md §9 (checks 3-7, 11),
plus the τ_xb → ∞ limit and the float32 logits under autocast (§8.5)."""

from __future__ import annotations

import math

import pytest
import torch
from deepclust_cidfd import (
    contrastive_instance_discrimination,
    feature_decorrelation,
    instance_discrimination,
)

from corekit import MemoryBank

TOL = 1e-5
BANK = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
BANK_W = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])


def idx(*values: int) -> torch.Tensor:
    return torch.tensor(values)


# --- check 3: L_ID ---------------------------------------------------------------------------

@pytest.mark.parametrize("tau, expected", [(1.0, 0.407606), (0.5, 0.142932)])
def test_check3_instance_discrimination_single(tau, expected):
    q = torch.tensor([[1.0, 0.0]])
    assert instance_discrimination(q, idx(0), BANK, tau).item() == pytest.approx(expected,
                                                                                 abs=TOL)


def test_check3_instance_discrimination_batch_mean():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert instance_discrimination(q, idx(0, 1), BANK, 1.0).item() == pytest.approx(0.479525,
                                                                                   abs=TOL)


def test_check3_positive_is_the_bank_row_not_the_query_itself():
    """§8.1: the positive logit is q·K̄[idx], so a bank row far from q gives a large loss."""
    q = torch.tensor([[1.0, 0.0]])
    near = instance_discrimination(q, idx(0), BANK, 1.0)
    far = instance_discrimination(q, idx(2), BANK, 1.0)  # the bank row opposite to q
    assert far.item() == pytest.approx(0.407606 + 2.0, abs=TOL) and far > near


# --- check 4: L_FD ---------------------------------------------------------------------------

@pytest.mark.parametrize("rows, expected", [
    ([[1, 0], [0, 1], [1, 0], [0, 1]], 0.474077),
    ([[0.6, 0.8]] * 3, math.log(2)),
    ([[1, 0], [0.6, 0.8], [0, 1]], 0.537820),
])
def test_check4_feature_decorrelation(rows, expected):
    q = torch.tensor(rows, dtype=torch.float32)
    assert feature_decorrelation(q, 2.0).item() == pytest.approx(expected, abs=TOL)


def test_check4_sum_form_is_d_times_the_mean():
    q = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert 2 * feature_decorrelation(q, 2.0).item() == pytest.approx(1.075640, abs=TOL)
    columns = torch.nn.functional.normalize(q, dim=0)
    assert (columns[:, 0] @ columns[:, 1]).item() == pytest.approx(0.321403, abs=TOL)


def test_check4_column_normalisation_makes_it_batch_size_free():
    """§8.10: repeating the batch leaves L_FD unchanged (G_ll would grow with B otherwise)."""
    q = torch.nn.functional.normalize(torch.randn(16, 8, generator=torch.Generator()
                                                  .manual_seed(0)), dim=1)
    once = feature_decorrelation(q, 2.0)
    assert feature_decorrelation(torch.cat([q, q, q]), 2.0).item() == pytest.approx(
        once.item(), abs=TOL)


# --- check 5: L_CI ---------------------------------------------------------------------------

def explicit_alpha_form(v, w, indices, bank_v, bank_w, tau_x, tau_xb):
    """The paper's Eq. 4 with α = exp(a/τ_xb) built explicitly, in float64 (reference only)."""
    v, w, bank_v, bank_w = (t.double() for t in (v, w, bank_v, bank_w))
    alpha = torch.exp(w @ bank_w.T / tau_xb)
    terms = alpha * torch.exp(v @ bank_v.T / tau_x)
    rows = torch.arange(len(v))
    return -(torch.log(terms[rows, indices] / terms.sum(1))).mean()


@pytest.mark.parametrize("tau_xb, expected", [(1.0, 0.349012), (0.5, 0.326563),
                                              (1e9, 0.407606)])
def test_check5_contrastive_instance_discrimination(tau_xb, expected):
    v = w = torch.tensor([[1.0, 0.0]])
    got = contrastive_instance_discrimination(v, w, idx(0), BANK, BANK_W, 1.0, tau_xb)
    assert got.item() == pytest.approx(expected, abs=TOL)
    reference = explicit_alpha_form(v, w, idx(0), BANK, BANK_W, 1.0, tau_xb)
    assert got.item() == pytest.approx(reference.item(), abs=TOL)


def test_check5_batch_mean():
    v = w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    got = contrastive_instance_discrimination(v, w, idx(0, 1), BANK, BANK_W, 1.0, 1.0)
    assert got.item() == pytest.approx(0.605504, abs=TOL)


def test_check5_w_and_v_may_have_different_dimensions():
    """§8.17: any frozen encoder can supply w; only the dot products are used."""
    v = torch.tensor([[1.0, 0.0]])
    w3 = torch.tensor([[1.0, 0.0, 0.0]])
    bank_w3 = torch.cat([BANK_W, torch.zeros(3, 1)], dim=1)
    got = contrastive_instance_discrimination(v, w3, idx(0), BANK, bank_w3, 1.0, 1.0)
    assert got.item() == pytest.approx(0.349012, abs=TOL)


# --- check 6 and the τ_xb → ∞ limit: cIDFD reduces to IDFD ---------------------------------

def test_check6_ci_equals_id_when_alpha_is_constant():
    gen = torch.Generator().manual_seed(1)
    v = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=1)
    bank_v = torch.nn.functional.normalize(torch.randn(9, 4, generator=gen), dim=1)
    unit = torch.nn.functional.normalize(torch.randn(1, 3, generator=gen), dim=1)
    w, bank_w = unit.expand(5, 3), unit.expand(9, 3)
    indices = idx(0, 3, 4, 7, 8)
    plain = instance_discrimination(v, indices, bank_v, 0.7)
    for tau_xb in (0.05, 0.5, 1.0, 4.0):
        got = contrastive_instance_discrimination(v, w, indices, bank_v, bank_w, 0.7, tau_xb)
        assert got.item() == pytest.approx(plain.item(), abs=TOL)


def test_ci_loss_reduces_to_idfd_as_tau_xb_grows():
    """|L_CI(τ_xb) − L_ID| shrinks like 1/τ_xb (first order: τ_xb·gap settles) and is exactly
    0 for τ_xb = None or ∞."""
    gen = torch.Generator().manual_seed(2)
    v = torch.nn.functional.normalize(torch.randn(8, 16, generator=gen), dim=1)
    w = torch.nn.functional.normalize(torch.randn(8, 16, generator=gen), dim=1)
    bank_v = torch.nn.functional.normalize(torch.randn(50, 16, generator=gen), dim=1)
    bank_w = torch.nn.functional.normalize(torch.randn(50, 16, generator=gen), dim=1)
    indices = torch.randperm(50, generator=gen)[:8]
    plain = instance_discrimination(v, indices, bank_v, 1.0)
    taus = (0.5, 2.0, 8.0, 32.0, 128.0, 1024.0)
    gaps = []
    for tau_xb in taus:
        got = contrastive_instance_discrimination(v, w, indices, bank_v, bank_w, 1.0, tau_xb)
        gaps.append(abs(got - plain).item())
        assert gaps[-1] <= 2.0 / tau_xb + 1e-6  # |Δ logits| ≤ 1/τ_xb moves the CE ≤ 2/τ_xb
    assert all(b < a for a, b in zip(gaps[1:], gaps[2:], strict=False))
    assert gaps[-1] * taus[-1] == pytest.approx(gaps[-2] * taus[-2], rel=0.05)
    for tau_xb in (None, math.inf):
        got = contrastive_instance_discrimination(v, w, indices, bank_v, bank_w, 1.0, tau_xb)
        assert torch.equal(got, plain)


# --- check 7: gradient reweighting -----------------------------------------------------------

def test_check7_gradient_reweighting():
    v = torch.tensor([[1.0, 0.0]], requires_grad=True)
    w = torch.tensor([[1.0, 0.0]], requires_grad=True)
    contrastive_instance_discrimination(v, w, idx(0), BANK, BANK_W, 1.0, 1.0).backward()
    assert v.grad[0].tolist() == pytest.approx([-0.329735, 0.259496], abs=TOL)
    assert w.grad is None  # w is detached: the frozen encoder gets no gradient
    p = torch.softmax(torch.tensor([2.0, 1.0, -1.0]), 0)
    assert p.tolist() == pytest.approx([0.705385, 0.259496, 0.035119], abs=TOL)
    q = torch.tensor([[1.0, 0.0]], requires_grad=True)
    instance_discrimination(q, idx(0), BANK, 1.0).backward()
    assert q.grad[0].tolist() == pytest.approx([-0.424790, 0.244728], abs=TOL)


def test_banks_get_no_gradient():
    bank = BANK.clone().requires_grad_(True)
    q = torch.tensor([[1.0, 0.0]], requires_grad=True)
    instance_discrimination(q, idx(0), bank, 1.0).backward()
    assert bank.grad is None and q.grad is not None


# --- §8.5: no α, float32 logits under autocast -----------------------------------------------

def test_small_tau_xb_does_not_overflow_and_logits_stay_float32_under_autocast():
    gen = torch.Generator().manual_seed(3)
    v = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=1)
    w = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=1)
    bank_v = torch.nn.functional.normalize(torch.randn(20, 8, generator=gen), dim=1)
    bank_w = torch.nn.functional.normalize(torch.randn(20, 8, generator=gen), dim=1)
    indices = idx(1, 5, 9, 13)
    tiny = contrastive_instance_discrimination(v, w, indices, bank_v, bank_w, 1.0, 1e-3)
    assert torch.isfinite(tiny)
    logits = (v.double() @ bank_v.double().T + w.double() @ bank_w.double().T / 1e-3)
    exact = torch.nn.functional.cross_entropy(logits, indices)
    assert tiny.item() == pytest.approx(exact.item(), rel=1e-4)
    plain = contrastive_instance_discrimination(v, w, indices, bank_v, bank_w, 1.0, 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = contrastive_instance_discrimination(v, w, indices, bank_v, bank_w, 1.0, 0.5)
        mixed_id = instance_discrimination(v, indices, bank_v, 1.0)
        mixed_fd = feature_decorrelation(v, 2.0)
    assert mixed.dtype == mixed_id.dtype == mixed_fd.dtype == torch.float32
    assert torch.equal(mixed, plain)
    assert torch.equal(mixed_id, instance_discrimination(v, indices, bank_v, 1.0))
    assert torch.equal(mixed_fd, feature_decorrelation(v, 2.0))


# --- check 11: loss scale at init ------------------------------------------------------------

def test_check11_loss_scale_at_init():
    """With the recipes' bank init (uniform, N = 60,000, d = 128) and random unit queries:
    L_ID ≈ ln N ± 0.1 and L_FD ≤ ln 128 (§8.8)."""
    gen = torch.Generator().manual_seed(4)
    bank = MemoryBank(None, 60_000, dim=128, init="uniform", generator=gen).read()
    q = torch.nn.functional.normalize(torch.randn(128, 128, generator=gen), dim=1)
    indices = torch.randperm(60_000, generator=gen)[:128]
    assert instance_discrimination(q, indices, bank, 1.0).item() == pytest.approx(
        math.log(60_000), abs=0.1)
    assert feature_decorrelation(q, 2.0).item() <= math.log(128)
    correlated = torch.nn.functional.normalize(torch.ones(128, 128), dim=1)
    assert feature_decorrelation(correlated, 2.0).item() == pytest.approx(4.852, abs=1e-3)


# --- the adapters read what they declare -----------------------------------------------------

class StubStep:
    """Outputs by (name, view), named banks and indices: what the three adapters read."""

    def __init__(self, outputs, states, indices):
        self.outputs, self.states, self.indices = outputs, states, indices

    def output(self, name, view=0, branch="online"):
        assert branch == "online"
        return self.outputs[(name, view)]

    def state(self, name):
        return self.states[name]


class Bank:
    def __init__(self, rows):
        self.rows = rows

    def read(self):
        return self.rows


def test_adapters_read_their_heads_views_and_banks():
    from deepclust_cidfd import (
        ContrastiveInstanceDiscrimination,
        FeatureDecorrelation,
        InstanceDiscrimination,
    )

    v = torch.tensor([[1.0, 0.0]])
    other = torch.tensor([[0.0, 1.0]])
    states = {"bank_v": Bank(BANK), "bank_w": Bank(BANK_W), "bank_z": Bank(BANK)}
    step = StubStep({("emb", 0): v, ("background_emb", 0): v, ("background_emb", 1): other},
                    states, idx(0))
    ci = ContrastiveInstanceDiscrimination()
    assert ci(step).item() == pytest.approx(0.349012, abs=TOL)
    separate = ContrastiveInstanceDiscrimination(background_view=1)
    expected = contrastive_instance_discrimination(v, other, idx(0), BANK, BANK_W)
    assert separate(step).item() == pytest.approx(expected.item(), abs=TOL)
    assert ContrastiveInstanceDiscrimination(tau_xb=math.inf)(step).item() == pytest.approx(
        0.407606, abs=TOL)
    assert InstanceDiscrimination(bank="bank_z")(step).item() == pytest.approx(0.407606,
                                                                             abs=TOL)
    assert FeatureDecorrelation()(step).item() == pytest.approx(
        feature_decorrelation(v, 2.0).item(), abs=TOL)
    kinds = {(n.kind, n.name, n.reads if n.kind == "output" else n.type)
             for n in ci.needs()}
    assert kinds >= {("output", "emb", "unit"), ("output", "background_emb", "unit"),
                     ("state", "bank_v", "memory_bank"), ("state", "bank_w", "memory_bank"),
                     ("cidfd_bank_source", "bank_v", "online:emb"),
                     ("cidfd_bank_source", "bank_w", "online:background_emb")}
    assert [n.count for n in separate.needs() if n.kind == "views"] == [2]


# --- check 8: the metrics the runs report (the core's; its own tests use other cases) -------

def test_check8_metrics():
    from corekit import metrics  # the core's metrics module (not exported by corekit)

    y, pred = torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([1, 1, 0, 0, 0, 2])
    got = metrics.evaluate(y, pred, 3)
    assert (got["acc"], got["nmi"], got["ari"]) == pytest.approx((0.833333, 0.685331,
                                                                   0.318182), abs=TOL)
    relabelled = metrics.evaluate(torch.tensor([0, 0, 1, 1, 2, 2]),
                                  torch.tensor([2, 2, 0, 0, 1, 1]), 3)
    assert (relabelled["acc"], relabelled["nmi"], relabelled["ari"]) == pytest.approx(
        (1.0, 1.0, 1.0), abs=TOL)
