"""Clustering metrics against the specs' exact values, sklearn and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from corekit.metrics import acc, ari, cluster_stats, evaluate, nmi, summarize

# (y_true, y_pred, ACC, NMI, ARI): cc.md §9.18–9.19, hadis.md C9.
SPEC_CASES = [
    ([0, 0, 0, 1, 1, 1, 2, 2, 2, 2], [1, 1, 0, 0, 0, 0, 2, 2, 2, 1], 0.8, 0.618066, 0.431818),
    ([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 2, 0], 0.833333, 0.739667, 0.444444),
    ([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2], 0.833333, 0.739667, 0.444444),
    ([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1], 0.666667, 0.515804, 0.242424),
]


@pytest.mark.parametrize(("y_true", "y_pred", "want_acc", "want_nmi", "want_ari"), SPEC_CASES)
def test_spec_values(y_true, y_pred, want_acc, want_nmi, want_ari):
    assert acc(y_true, y_pred) == pytest.approx(want_acc, abs=1e-6)
    assert nmi(y_true, y_pred) == pytest.approx(want_nmi, abs=1e-6)
    assert ari(y_true, y_pred) == pytest.approx(want_ari, abs=1e-6)


@pytest.mark.parametrize(("y_true", "y_pred", "want_acc", "want_nmi", "want_ari"), SPEC_CASES)
def test_relabel_invariance(y_true, y_pred, want_acc, want_nmi, want_ari):
    pred = np.asarray(y_pred)
    ids = np.unique(pred)
    for perm in itertools.permutations(ids):
        relabelled = np.asarray(perm)[np.searchsorted(ids, pred)]
        assert acc(y_true, relabelled) == pytest.approx(want_acc, abs=1e-6)
        assert nmi(y_true, relabelled) == pytest.approx(want_nmi, abs=1e-6)
        assert ari(y_true, relabelled) == pytest.approx(want_ari, abs=1e-6)
    assert acc(y_true, (pred + 1) % 3) == pytest.approx(want_acc, abs=1e-6)


def test_9_14_nmi_average_methods():
    """spice.md 9.14 and D11: with one cluster empty the entropies differ, and so do the
    arithmetic (the default) and the geometric (SPICE's code) normalisations."""
    y_true, y_pred = [0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 1, 1]
    assert nmi(y_true, y_pred) == pytest.approx(0.733680, abs=1e-6)
    assert nmi(y_true, y_pred, "arithmetic") == pytest.approx(0.733680, abs=1e-6)
    assert nmi(y_true, y_pred, "geometric") == pytest.approx(0.761170, abs=1e-6)
    assert evaluate(y_true, y_pred, 3)["nmi"] == pytest.approx(0.733680, abs=1e-6)
    assert evaluate(y_true, y_pred, 3, "geometric")["nmi"] == pytest.approx(0.761170, abs=1e-6)


def test_acc_with_empty_cluster_zero():
    # cc.md §9.20: the official helper returns 0.0 for both.
    assert acc([0, 0, 1, 1], [1, 1, 2, 2]) == pytest.approx(1.0)
    assert acc([0, 0, 1, 1, 2, 2], [1, 1, 2, 2, 2, 2]) == pytest.approx(0.666667, abs=1e-6)


def test_acc_ids_not_zero_based_and_more_clusters_than_classes():
    y_true = [0, 0, 1, 1, 2, 2]
    assert acc(y_true, [107, 107, 42, 42, 9, 9]) == pytest.approx(1.0)
    assert acc(y_true, [0, 0, 1, 1, 2, 3]) == pytest.approx(5 / 6)
    assert acc([5, 5, 7, 7], [0, 0, 1, 1]) == pytest.approx(1.0)


def _brute_force_acc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    best = 0
    slots = list(classes) + [None] * max(0, len(clusters) - len(classes))
    for mapping in itertools.permutations(slots, len(clusters)):
        hits = sum(
            int(np.sum((y_pred == c) & (y_true == k)))
            for c, k in zip(clusters, mapping, strict=True)
            if k is not None
        )
        best = max(best, hits)
    return best / len(y_true)


@pytest.mark.parametrize(("n_true", "n_pred"), [(4, 4), (3, 5), (5, 3)])
def test_random_labels_against_sklearn_and_brute_force(n_true, n_pred):
    rng = np.random.default_rng(n_true * 10 + n_pred)
    for _ in range(5):
        y_true = rng.integers(0, n_true, size=60)
        y_pred = rng.integers(0, n_pred, size=60)
        assert nmi(y_true, y_pred) == pytest.approx(
            normalized_mutual_info_score(y_true, y_pred), abs=1e-12
        )
        assert ari(y_true, y_pred) == pytest.approx(adjusted_rand_score(y_true, y_pred), abs=1e-12)
        assert acc(y_true, y_pred) == pytest.approx(_brute_force_acc(y_true, y_pred), abs=1e-12)


def test_accepts_torch_tensors():
    y_true, y_pred, want_acc, want_nmi, want_ari = SPEC_CASES[0]
    result = evaluate(torch.tensor(y_true), torch.tensor(y_pred), n_clusters=3)
    assert result["acc"] == pytest.approx(want_acc, abs=1e-6)
    assert result["nmi"] == pytest.approx(want_nmi, abs=1e-6)
    assert result["ari"] == pytest.approx(want_ari, abs=1e-6)


def test_cluster_stats_counts_empty_clusters():
    stats = cluster_stats([5, 5, 5, 9], n_clusters=3)
    sizes = np.array([3.0, 1.0, 0.0])
    assert stats["empty_clusters"] == 1
    assert stats["largest_fraction"] == pytest.approx(0.75)
    assert stats["smallest_fraction"] == 0.0
    assert stats["size_cv"] == pytest.approx(sizes.std() / sizes.mean())
    balanced = cluster_stats([0, 1, 2, 0, 1, 2], n_clusters=3)
    assert balanced["size_cv"] == 0.0
    assert balanced["empty_clusters"] == 0


def test_evaluate_keys():
    result = evaluate([0, 0, 1, 1], [1, 1, 0, 0], n_clusters=2)
    assert set(result) == {
        "nmi",
        "acc",
        "ari",
        "empty_clusters",
        "largest_fraction",
        "smallest_fraction",
        "size_cv",
    }
    assert result["acc"] == result["nmi"] == result["ari"] == pytest.approx(1.0)


def test_summarize_mean_and_std():
    runs = [{"nmi": 0.5, "acc": 0.6, "tag": "x"}, {"nmi": 0.7, "acc": 0.8, "tag": "y"}]
    summary = summarize(runs)
    assert set(summary) == {"nmi", "acc"}
    assert summary["nmi"]["mean"] == pytest.approx(0.6)
    assert summary["nmi"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert summary["acc"]["n"] == 2
    assert summarize([{"nmi": 0.5}])["nmi"] == {"mean": 0.5, "std": 0.0, "n": 1}
    with pytest.raises(ValueError):
        summarize([])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="labels"):
        acc([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="integers"):
        nmi([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_stats([0, 1, 2], n_clusters=2)


def test_assert_above_chance_checks_the_runs_own_nmi_normalisation():
    from corekit.testing import assert_above_chance

    labels = torch.arange(60) % 3
    pred = torch.where(torch.arange(60) < 50, labels, torch.zeros(60, dtype=torch.long))
    geometric = evaluate(labels, pred, 3, "geometric")
    assert geometric["nmi"] != evaluate(labels, pred, 3)["nmi"]
    assert_above_chance(geometric, [(labels, pred, 3)], nmi_average="geometric")
    with pytest.raises(AssertionError, match="not those of the last evaluation"):
        assert_above_chance(geometric, [(labels, pred, 3)])
