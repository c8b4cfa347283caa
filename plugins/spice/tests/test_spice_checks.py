"""Spec spice.md §9, checks 9.1-9.13: small deterministic values (float64, 1e-6 unless noted).

9.14-9.16 are core tests: tests/core/test_metrics.py (9.14, NMI geometric / arithmetic and ACC
with an empty cluster) and tests/core/test_stage_fixes.py (9.15-9.16 stage-2 freezing)."""

from __future__ import annotations

import math

import pytest
import torch
from deepclust_spice import (
    SpiceMultiHead,
    clusterresnet34,
    double_softmax_ce,
    moco_infonce,
    prototype_pairs,
    reliable_labels,
    selection_scores,
    wrn28_2,
    wrn37_2_stl10,
)
from deepclust_spice.prototypes import default_sizes

ANGLES = [0, 10, 340, 30, 110, 130, 95, 230, 250, 190]
P = torch.tensor([[.80, .10, .10], [.75, .15, .10], [.70, .10, .20], [.30, .60, .10],
                  [.10, .85, .05], [.05, .80, .15], [.15, .75, .10], [.10, .10, .80],
                  [.05, .20, .75], [.10, .25, .65]], dtype=torch.float64)


def unit(angles: list[float]) -> torch.Tensor:
    rad = torch.tensor(angles, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1)


F = unit(ANGLES)


def groups(index: torch.Tensor, label: torch.Tensor, k: int = 3) -> list[list[int]]:
    return [index[label == c].tolist() for c in range(k)]


def test_9_1_prototype_labelling_overlap() -> None:
    index, label = prototype_pairs(F, P, m=3, n_s=4)
    assert groups(index, label) == [[0, 1, 2, 3], [4, 6, 5, 9], [7, 8, 9, 5]]
    assert len(index) == 12
    assert double_softmax_ce(P[index], label).item() == pytest.approx(0.849101, abs=1e-6)


def test_9_1_centres_are_not_renormalised_and_rank_by_cosine() -> None:
    """c_2 = (−0.656539, −0.626462): ranking by Euclidean distance to it would differ (P5)."""
    centre = F[[7, 8, 9]].mean(dim=0)
    assert centre.tolist() == pytest.approx([-0.656539, -0.626462], abs=1e-6)


def test_9_2_non_overlap() -> None:
    index, label = prototype_pairs(F, P, m=3, n_s=4, overlap=False)
    assert groups(index, label) == [[0, 1, 2, 3], [4, 6, 5, 9], [7, 8]]


def test_9_2_non_overlap_confident_sets_skip_earlier_ones() -> None:
    """S_k skips the images S_<k chose (the 9.2 geometry never exercises it): image 0 is the
    most confident of clusters 0 and 1, so S_1 takes image 2, whose prototype labels itself;
    without the skip S_1 = {0} and A_1 would be image 1, the nearest unlabelled to image 0."""
    features = unit([0, 60, 200, 280])
    probs = torch.tensor([[.45, .45, .10], [.40, .20, .40], [.20, .40, .40],
                          [.10, .10, .80]], dtype=torch.float64)
    index, label = prototype_pairs(features, probs, m=1, n_s=1, overlap=False)
    assert groups(index, label) == [[0], [2], [3]]


def test_9_3_code_defaults() -> None:
    m, n_s = default_sizes(10, 3)
    assert (m, n_s) == (1, 3)
    index, label = prototype_pairs(F, P, m, n_s)
    assert groups(index, label) == [[0, 1, 2], [4, 6, 5], [7, 8, 9]]
    assert 3 not in index.tolist()
    assert double_softmax_ce(P[index], label).item() == pytest.approx(0.720651, abs=1e-6)
    plain = -P[index, label].log().mean()
    assert plain.item() == pytest.approx(0.275828, abs=1e-6)
    assert groups(*prototype_pairs(F, P, 3, 3)) == [[0, 1, 2], [4, 6, 5], [7, 8, 9]]


def test_9_4_uniform_head() -> None:
    uniform = torch.full((10, 3), 1 / 3, dtype=torch.float64)
    index, label = prototype_pairs(F, uniform, 1, 3)
    assert double_softmax_ce(uniform[index], label).item() == pytest.approx(math.log(3),
                                                                            abs=1e-6)


def head_c() -> torch.Tensor:
    rows = torch.zeros(10, 3, dtype=torch.float64)
    for i in range(10):
        top = 0.90 - 0.01 * i
        rows[i] = (1 - top) / 2
        rows[i, i % 3] = top
    return rows


def test_9_5_head_selection() -> None:
    uniform = torch.full((10, 3), 1 / 3, dtype=torch.float64)
    scores = selection_scores(F, torch.stack([P, head_c(), uniform], dim=1))
    assert scores.tolist() == pytest.approx([0.720651, 1.180536, 1.098612], abs=1e-6)
    assert int(scores.argmin()) == 0
    index, label = prototype_pairs(F, head_c(), 1, 3)
    assert groups(index, label) == [[0, 1, 2], [1, 0, 3], [2, 0, 1]]


def test_9_6_permutation_invariance() -> None:
    permuted = P[:, [2, 0, 1]]
    index, label = prototype_pairs(F, permuted, 1, 3)
    assert groups(index, label) == [[7, 8, 9], [0, 1, 2], [4, 6, 5]]
    score = selection_scores(F, permuted[:, None])
    assert score.item() == pytest.approx(0.720651, abs=1e-6)


def test_9_7_double_softmax_values_and_gradient() -> None:
    p = torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64)
    assert double_softmax_ce(p, torch.tensor([0])).item() == pytest.approx(0.767950, abs=1e-6)
    assert double_softmax_ce(p, torch.tensor([2])).item() == pytest.approx(1.367950, abs=1e-6)
    z = p.log().requires_grad_(True)
    double_softmax_ce(z.softmax(dim=1), torch.tensor([0])).backward()
    assert z.grad[0].tolist() == pytest.approx([-0.169789, 0.114978, 0.054811], abs=1e-6)
    for k, floor in ((10, 1.461150), (15, 1.816503), (20, 2.078154), (200, 4.306872)):
        assert math.log(1 + (k - 1) / math.e) == pytest.approx(floor, abs=1e-6)
        one_hot = torch.eye(k, dtype=torch.float64)[:1]
        assert double_softmax_ce(one_hot, torch.tensor([0])).item() == pytest.approx(floor,
                                                                                     abs=1e-6)


REL_F = unit([0, 6, 14, 24, 98, 104, 113, 125, 60])
REL_Y = [0, 0, 0, 1, 1, 1, 1, 1, 0]
REL_CONF = [.999, .995, .98, .999, .999, .999, .995, .999, .999]


def rel_probs() -> torch.Tensor:
    probs = torch.zeros(9, 2, dtype=torch.float64)
    for i, (y, c) in enumerate(zip(REL_Y, REL_CONF, strict=True)):
        probs[i, y], probs[i, 1 - y] = c, 1 - c
    return probs


def test_9_8_reliable_labels() -> None:
    from deepclust_spice import nearest_neighbours

    assert nearest_neighbours(REL_F, 4).tolist() == [
        [0, 1, 2, 3], [1, 0, 2, 3], [2, 1, 3, 0], [3, 2, 1, 0], [4, 5, 6, 7], [5, 4, 6, 7],
        [6, 5, 7, 4], [7, 6, 5, 4], [8, 3, 4, 5]]
    out = reliable_labels(REL_F, rel_probs(), 4, 0.75, 0.99, True, torch.Generator())
    assert out.counts.tolist() == [3, 3, 3, 1, 4, 4, 4, 4, 1]
    assert out.kept.tolist() == [2, 4]
    labels = out.labels.tolist()
    assert labels[:2] == [0, 0] and labels[2] == labels[3] == labels[8] == -100
    assert sorted(i for i in range(4, 8) if labels[i] == 1) != []
    assert sum(1 for i in range(4, 8) if labels[i] == 1) == 2
    assert all(labels[i] in (1, -100) for i in range(4, 8))
    draws = {tuple(reliable_labels(REL_F, rel_probs(), 4, 0.75, 0.99, True,
                                   torch.Generator().manual_seed(s)).labels.tolist())
             for s in range(20)}
    assert len(draws) > 1  # the balance is a random draw (seeded)


def test_9_8_reliable_variants() -> None:
    out = reliable_labels(REL_F, rel_probs(), 3, 1.0, 0.99, True, torch.Generator())
    assert out.counts.tolist() == [3, 3, 2, 1, 3, 3, 3, 3, 1]
    assert out.kept.tolist() == [2, 4]
    plain = reliable_labels(REL_F, rel_probs(), 4, 0.75, None, False)
    assert plain.labels.tolist() == [0, 0, 0, -100, 1, 1, 1, 1, -100]


def test_9_8_confidence_must_exceed_the_threshold() -> None:
    """``max_k p > 0.99`` is strict: an image at exactly 0.99 is left out."""
    probs = rel_probs()
    probs[0] = torch.tensor([0.99, 0.01], dtype=torch.float64)
    out = reliable_labels(REL_F, probs, 4, 0.75, 0.99, False)
    assert out.labels.tolist()[:2] == [-100, 0]


def test_9_9_fixmatch_loss_is_the_cores_cross_entropy() -> None:
    """Stage 3's loss is the core's: ``cross_entropy`` (labelled mean) on the labelled weak
    view plus ``cross_entropy`` (reduction ``batch``: 1/μB) of the strong view against
    ``confidence_threshold`` (0.95) on the weak view."""
    from corekit.components.losses import target_cross_entropy
    from corekit.components.pseudo_labelers import ConfidenceThreshold
    from corekit.testing import FakeStep

    z_l = torch.tensor([[2., 0, 0], [0, 1, 0]], dtype=torch.float64)
    z_w = torch.tensor([[5., 0, 0], [1, 1, 0], [0, 0, 4]], dtype=torch.float64)
    z_s = torch.tensor([[1., 0, 0], [0, 2, 0], [0, 1, 0]], dtype=torch.float64)
    l_s = target_cross_entropy(z_l, torch.tensor([0, 2]), torch.ones(2, dtype=torch.float64),
                               False, "labelled")
    assert l_s.item() == pytest.approx(0.895495, abs=1e-6)
    labels, mask = ConfidenceThreshold("classifier", 0.95, "weak")(
        FakeStep({("online", "classifier", "weak"): z_w.softmax(dim=1)}))
    assert labels.tolist() == [0, 0, 2] and mask.tolist() == [True, False, True]
    l_u = target_cross_entropy(z_s, labels, mask.double(), False, "batch")
    assert l_u.item() == pytest.approx(0.700963, abs=1e-6)
    assert (l_s + l_u).item() == pytest.approx(1.596458, abs=1e-6)
    wrong = target_cross_entropy(z_s, labels, mask.double(), False, "labelled")
    assert wrong.item() == pytest.approx(1.051445, abs=1e-6)  # L_u over the mask count
    on_probs = target_cross_entropy(z_s.softmax(dim=1), labels, mask.double(), True, "batch")
    assert on_probs.item() == pytest.approx(0.700963, abs=1e-6)  # the classifier's probs


def test_9_10_moco_infonce() -> None:
    q = torch.tensor([[1., 0]], dtype=torch.float64)
    k = torch.tensor([[0.8, 0.6]], dtype=torch.float64)
    queue = torch.tensor([[0., 1], [-1, 0], [0.6, -0.8]], dtype=torch.float64)
    assert moco_infonce(q, k, queue, 0.2).item() == pytest.approx(0.326652, abs=1e-6)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_9_11_shapes_and_sizes() -> None:
    net = clusterresnet34()
    assert count(net) == 21_276_992
    assert net.feature_map(torch.zeros(2, 3, 96, 96)).shape == (2, 512, 7, 7)
    assert net.feature_map(torch.zeros(2, 3, 32, 32)).shape == (2, 512, 3, 3)
    assert net.feature_map(torch.zeros(2, 3, 64, 64)).shape == (2, 512, 5, 5)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    for k, size in ((10, 267_786), (15, 270_351), (20, 272_916), (200, 365_256)):
        assert count(SpiceMultiHead(512, k, heads=1)) == size
    heads = SpiceMultiHead(512, 10)
    assert count(heads) == 2_677_860
    out = heads(torch.randn(4, 512))
    assert out.shape == (4, 10, 10)
    assert torch.allclose(out.sum(dim=2), torch.ones(4, 10))
    assert count(wrn28_2()) + 128 * 10 + 10 == 1_467_610  # FixMatch's WRN-28-2 with its fc
    assert wrn37_2_stl10()(torch.zeros(2, 3, 96, 96)).shape == (2, 256)


@pytest.mark.parametrize(("n", "k", "m", "n_s", "pairs"), [
    (5000, 10, 250, 500, 5000), (10000, 20, 250, 500, 10000), (8000, 15, 266, 533, 7995),
    (13000, 10, 650, 1300, 13000), (60000, 10, 3000, 6000, 60000)])
def test_9_12_selection_sizes(n: int, k: int, m: int, n_s: int, pairs: int) -> None:
    assert default_sizes(n, k) == (m, n_s)
    assert k * n_s == pairs


def test_9_13_schedules() -> None:
    from corekit.components.schedules import Cosine, FixMatchCosine

    fixmatch = FixMatchCosine(steps_per_epoch=2 ** 10, epochs=2 ** 10)
    lrs = [0.03 * fixmatch.factor(k + 1) for k in (0, 2 ** 19, 2 ** 20)]
    assert lrs == pytest.approx([0.03, 0.0231903, 0.0058527], abs=1e-7)
    moco = Cosine(steps_per_epoch=10, epochs=1000)
    lrs = [0.015 * moco.factor(epoch * 10) for epoch in (0, 500, 999)]
    assert lrs == pytest.approx([0.015, 0.0075, 3.70e-8], rel=1e-3)
