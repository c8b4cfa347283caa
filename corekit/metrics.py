"""Clustering metrics on hard assignments: NMI, ACC (Hungarian), ARI and cluster-size stats."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from corekit.recipe.schema import NmiAverage


def _as_labels(values: Any) -> np.ndarray:
    """1-D int64 numpy array from a numpy array, torch tensor or sequence."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    true, pred = _as_labels(y_true), _as_labels(y_pred)
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} labels but y_pred has {pred.size}")
    if true.size == 0:
        raise ValueError("cannot score an empty assignment")
    return true, pred


def nmi(y_true: Any, y_pred: Any, average_method: NmiAverage = "arithmetic") -> float:
    """Normalised mutual information I(T; P) / mean(H(T), H(P)) (scikit-learn), the mean
    arithmetic or geometric (SPICE's code reports the geometric one)."""
    true, pred = _pair(y_true, y_pred)
    return float(normalized_mutual_info_score(true, pred, average_method=average_method))


def acc(y_true: Any, y_pred: Any) -> float:
    """Clustering accuracy under the best one-to-one cluster→class mapping.

    Hungarian assignment on the full rectangular contingency table of the ids that occur,
    so empty clusters, non-0-based ids and a cluster count different from the class count
    are all handled; unmatched clusters count as wrong.
    """
    true, pred = _pair(y_true, y_pred)
    _, true_ids = np.unique(true, return_inverse=True)
    pred_values, pred_ids = np.unique(pred, return_inverse=True)
    table = np.zeros((len(pred_values), int(true_ids.max()) + 1), dtype=np.int64)
    np.add.at(table, (pred_ids, true_ids), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / true.size)


def ari(y_true: Any, y_pred: Any) -> float:
    """Adjusted Rand index (scikit-learn)."""
    true, pred = _pair(y_true, y_pred)
    return float(adjusted_rand_score(true, pred))


def cluster_stats(y_pred: Any, n_clusters: int) -> dict[str, float]:
    """Cluster-size health: empty clusters, largest/smallest fraction, size CV.

    Sizes are taken over all ``n_clusters`` clusters (absent ids count as empty), so the
    ids themselves may be arbitrary. ``size_cv`` is the population std of the sizes over
    their mean.
    """
    pred = _as_labels(y_pred)
    if pred.size == 0:
        raise ValueError("cannot score an empty assignment")
    _, counts = np.unique(pred, return_counts=True)
    if counts.size > n_clusters:
        raise ValueError(f"y_pred uses {counts.size} cluster ids but n_clusters is {n_clusters}")
    sizes = np.zeros(n_clusters, dtype=np.float64)
    sizes[: counts.size] = counts
    return {
        "empty_clusters": int(n_clusters - counts.size),
        "largest_fraction": float(sizes.max() / pred.size),
        "smallest_fraction": float(sizes.min() / pred.size),
        "size_cv": float(sizes.std() / sizes.mean()),
    }


def evaluate(y_true: Any, y_pred: Any, n_clusters: int,
             nmi_average: NmiAverage = "arithmetic") -> dict[str, float]:
    """NMI (normalised by the ``nmi_average`` mean), ACC and ARI against ground truth, plus
    :func:`cluster_stats`."""
    return {
        "nmi": nmi(y_true, y_pred, nmi_average),
        "acc": acc(y_true, y_pred),
        "ari": ari(y_true, y_pred),
        **cluster_stats(y_pred, n_clusters),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample std (ddof=1; 0.0 for a single run) of each numeric metric over runs.

    Only metrics present in every run are summarised. Returns
    ``{metric: {"mean": ..., "std": ..., "n": ...}}``.
    """
    if not runs:
        raise ValueError("summarize needs at least one run")
    keys = [
        key
        for key, value in runs[0].items()
        if isinstance(value, (int, float))
        and not isinstance(value, bool)
        and all(key in run for run in runs)
    ]
    summary: dict[str, dict[str, float]] = {}
    for key in keys:
        values = np.array([float(run[key]) for run in runs])
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        summary[key] = {"mean": float(values.mean()), "std": std, "n": int(values.size)}
    return summary
