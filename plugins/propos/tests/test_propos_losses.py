"""ProPos PSA and PSL against specs/hadis.md §9 C3-C7, plus the per-direction loss classes."""

from __future__ import annotations

import math

import pytest
import torch
from deepclust_propos import PSA, PSL, prototypes, psa, psl

from corekit.testing import FakeStep


def unit(*degrees: float) -> torch.Tensor:
    """Rows ``u(θ) = (cos θ, sin θ)``, θ in degrees (spec §9 helper)."""
    radians = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([radians.cos(), radians.sin()], dim=1).float()


C1_K = unit(0, 60, 90, 180)
C1_P = torch.cat([2 * unit(20), unit(25), 0.5 * unit(140), unit(200)])
C4_Q = unit(0, 10, 100, 120, 200, 260)
C4_K = unit(5, 15, 95, 125, 210, 250)
C4_Y = torch.tensor([0, 0, 1, 1, 2, 2])


def test_c3_psa_code_and_paper_forms() -> None:
    cos = torch.nn.functional.cosine_similarity(C1_P, C1_K, dim=1)
    assert cos.tolist() == pytest.approx([0.939693, 0.819152, 0.642788, 0.939693], abs=1e-5)
    assert psa(C1_P, C1_K).item() == pytest.approx(-1.670662, abs=1e-5)
    paper = (torch.nn.functional.normalize(C1_P, dim=1) - C1_K).pow(2).sum(1).mean()
    assert paper.item() == pytest.approx(0.329338, abs=1e-5)
    assert psa(C1_P, C1_K).item() + 2 == pytest.approx(paper.item(), abs=1e-5)


def test_c3_psa_is_invariant_to_positive_row_scales() -> None:
    scales = torch.tensor([[0.1], [3.0], [7.0], [0.5]])
    assert psa(C1_P * scales, C1_K * scales.flip(0)).item() == pytest.approx(-1.670662, abs=1e-5)


def test_psa_gradient_reaches_prediction_only_through_cosine() -> None:
    p = C1_P.clone().requires_grad_()
    psa(p, C1_K).backward()
    assert torch.isfinite(p.grad).all()
    # the gradient of a cosine is orthogonal to the prediction itself
    assert (p.grad * p.detach()).sum(1).abs().max().item() < 1e-6


def test_c4_prototypes() -> None:
    def angles(u: torch.Tensor) -> list[float]:
        return torch.atan2(u[:, 1], u[:, 0]).rad2deg().tolist()

    student = prototypes(C4_Q, C4_Y, 3)
    teacher = prototypes(C4_K, C4_Y, 3)
    assert angles(student) == pytest.approx([5.0, 110.0, -130.0], abs=1e-4)
    assert angles(teacher) == pytest.approx([10.0, 110.0, -130.0], abs=1e-4)
    assert student.norm(dim=1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)


def test_prototype_of_an_absent_cluster_is_zero() -> None:
    assert prototypes(C4_Q[:4], C4_Y[:4], 3)[2].abs().max().item() == 0.0


def test_c5_psl_student_negatives() -> None:
    assert psl(C4_Q, C4_K, C4_Y, 3).item() == pytest.approx(0.103462, abs=1e-5)
    by_hand = math.log(1 + math.exp(-2.510027) + math.exp(-3.406603))
    assert by_hand == pytest.approx(0.108334, abs=1e-6)


def test_c5_psl_per_cluster_values() -> None:
    # the mean over clusters decomposes: recompute each cluster's row from the logits
    student, teacher = prototypes(C4_Q, C4_Y, 3), prototypes(C4_K, C4_Y, 3)
    logits = student @ student.T / 0.5
    logits.fill_diagonal_(0.0)
    logits += torch.diag((student * teacher).sum(1) / 0.5)
    rows = torch.nn.functional.cross_entropy(logits, torch.arange(3), reduction="none")
    assert rows.tolist() == pytest.approx([0.108334, 0.122604, 0.079448], abs=1e-5)
    assert rows.mean().item() == pytest.approx(psl(C4_Q, C4_K, C4_Y, 3).item(), abs=1e-6)


def test_c6_psl_teacher_negatives_is_the_paper_literal_variant() -> None:
    assert psl(C4_Q, C4_K, C4_Y, 3, negatives="teacher").item() == pytest.approx(0.106721,
                                                                                 abs=1e-5)


def test_c7_psl_with_an_absent_cluster() -> None:
    q, k, y = C4_Q[:4], C4_K[:4], C4_Y[:4]
    assert psl(q, k, y, 3).item() == pytest.approx(0.077853, abs=1e-5)
    exact = psl(q, k, y, 3, absent_logit=float("-inf"))
    assert exact.item() == pytest.approx(0.077848, abs=1e-5)
    literal = psl(q, k, y, 3, negatives="teacher", absent_logit=float("-inf"))
    assert literal.item() == pytest.approx(0.084730, abs=1e-5)


def test_psl_normalises_its_inputs_and_rejects_unknown_negatives() -> None:
    assert psl(3 * C4_Q, C4_K, C4_Y, 3).item() == pytest.approx(0.103462, abs=1e-5)
    with pytest.raises(ValueError, match="negatives"):
        psl(C4_Q, C4_K, C4_Y, 3, negatives="both")
    with pytest.raises(ValueError):
        PSL(n_clusters=3, negatives="both")


def test_psl_gradient_flows_to_student_not_teacher() -> None:
    q = C4_Q.clone().requires_grad_()
    k = C4_K.clone().requires_grad_()
    psl(q, k, C4_Y, 3).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


def test_psa_class_averages_both_directions_on_normalised_teacher() -> None:
    g = torch.Generator().manual_seed(0)
    p0, p1, k0, k1 = (torch.randn(6, 4, generator=g) for _ in range(4))
    step = FakeStep({("online", "pred", 0): p0, ("online", "pred", 1): p1,
                     ("target", "proj", 0): 5 * k0, ("target", "proj", 1): 5 * k1})
    expected = (psa(p0, k1) + psa(p1, k0)) / 2
    assert PSA()(step).item() == pytest.approx(expected.item(), abs=1e-6)
    names = {(n.kind, n.name, n.branch) for n in PSA().needs()}
    assert {("output", "pred", "online"), ("output", "proj", "target")} <= names


def test_psl_class_averages_both_directions() -> None:
    g = torch.Generator().manual_seed(1)
    q0, q1, k0, k1 = (torch.randn(6, 4, generator=g) for _ in range(4))
    step = FakeStep({("online", "proj", 0): q0, ("online", "proj", 1): q1,
                     ("target", "proj", 0): k0, ("target", "proj", 1): k1}, labels=C4_Y)
    n = torch.nn.functional.normalize
    expected = (psl(q0, n(k1, dim=1), C4_Y, 3) + psl(q1, n(k0, dim=1), C4_Y, 3)) / 2
    loss = PSL(n_clusters=3)
    assert loss(step).item() == pytest.approx(expected.item(), abs=1e-6)
    assert "labels" in {need.kind for need in loss.needs()}
