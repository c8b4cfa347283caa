"""SPICE's reliable pseudo-labels, between stages 2 and 3 (Eq. 6-7, arXiv 2103.09382, with the two
rules the authors' code adds: a confidence filter and class balance).

``nearest_neighbours`` and ``reliable_labels`` are pure functions; ``SpiceReliableLabeler`` is
the dataset-level labeler (``[pseudo_labeler.NAME] type = "spice_reliable_labeler"``).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import torch
from torch.nn import functional as F

from corekit import ComponentError, LabelRows

IGNORE = -100
"""The label of an image left out of the reliable set (the code's ``-100``)."""


def nearest_neighbours(features: torch.Tensor, count: int, chunk: int = 4096) -> torch.Tensor:
    """``(N, count)`` indices of each row's ``count`` largest ``F_i · F_j`` over all j, the
    image itself included, most similar first and equal similarities by index (a stable
    sort's order); ``features`` (N, D) L2-normalised. The similarities are computed ``chunk``
    rows at a time (a dense N×N is 14 GB at N = 60,000)."""
    count = min(count, features.shape[0])
    return torch.cat([_top_stable(rows @ features.T, count) for rows in features.split(chunk)])


def _top_stable(sims: torch.Tensor, count: int) -> torch.Tensor:
    """``(R, count)``: the first ``count`` columns of a stable descending sort of ``sims``
    (R, N), from ``topk`` (a full sort of 60,000 columns a row is minutes at N = 60,000).
    ``topk`` picks freely among values equal to the last one it keeps; the rows where such a
    tie crosses the cut (rare with float features, common with duplicate images) are sorted
    in full."""
    values, top = sims.topk(min(count + 1, sims.shape[1]), dim=1)
    tied = values[:, count - 1] == values[:, count] if values.shape[1] > count else None
    top = top[:, :count].sort(dim=1).values  # by index, then stably by value: a stable sort
    top = top.gather(1, sims.gather(1, top).sort(dim=1, descending=True, stable=True).indices)
    if tied is not None and tied.any():
        full = sims[tied].sort(dim=1, descending=True, stable=True).indices[:, :count]
        top[tied] = full
    return top


@attrs.frozen
class Reliable:
    """The outcome of reliable labelling: ``labels`` (N,) (``IGNORE`` where left out),
    ``kept`` (K,) the images per cluster that passed both tests before balancing, and
    ``counts`` (N,) the agreeing neighbours of each image."""

    labels: torch.Tensor
    kept: torch.Tensor
    counts: torch.Tensor


def reliable_labels(features: torch.Tensor, probs: torch.Tensor, n_neighbours: int = 100,
                    ratio: float = 0.9, confidence: float | None = 0.99, balance: bool = True,
                    generator: torch.Generator | None = None, chunk: int = 4096) -> Reliable:
    """Reliable labels (Eq. 6-7, arXiv 2103.09382, and the authors' code's two extra rules).

    ``features`` (N, D) L2-normalised embeddings, ``probs`` (N, K) the selected head's
    probabilities. ``ŷ_i = argmax_k probs[i]``; ``c_i`` = how many of the ``n_neighbours``
    nearest embeddings (self included) share ``ŷ_i``; image i is kept when ``c_i ≥ ratio·N'``
    and (unless ``confidence`` is None) ``max_k probs[i] > confidence``. With ``balance`` every
    cluster keeps a uniformly random ``n_min`` (the smallest cluster's count) of its kept
    images, drawn from ``generator``; when a cluster keeps none (``n_min = 0``) nothing is
    balanced away, so the counts stay visible (stage 3 refuses such a set)."""
    confidence_of, predicted = probs.max(dim=1)
    neighbours = nearest_neighbours(features.to(probs.dtype), n_neighbours, chunk)
    counts = (predicted[neighbours] == predicted[:, None]).sum(dim=1)
    keep = counts.double() >= ratio * neighbours.shape[1]
    if confidence is not None:
        keep &= confidence_of > confidence
    k = probs.shape[1]
    kept = torch.bincount(predicted[keep], minlength=k)
    labels = torch.full_like(predicted, IGNORE)
    labels[keep] = predicted[keep]
    n_min = int(kept.min())
    if balance and n_min > 0:
        balanced = torch.full_like(predicted, IGNORE)
        for cluster in range(k):
            members = (labels == cluster).nonzero().squeeze(1)
            draw = torch.randperm(members.numel(), generator=generator)[:n_min]
            balanced[members[draw.to(members.device)]] = cluster
        labels = balanced
    return Reliable(labels, kept, counts)


@attrs.define
class SpiceReliableLabeler:
    """Reliable labels as a dataset-level labeler: ``label({"features": (N, D), "probs":
    (N, K)})`` from the embedding bank (``"state:bank"``) and the selected head
    (``"select:heads"``, the evaluation transform), run once at stage 2's end (``when =
    "stage_end"``). Rows: each reliable image with its cluster, weight 1. ``seed`` draws the
    balance. The last outcome is kept in ``last`` (per-cluster counts for the log and
    README)."""

    n_neighbours: int = 100
    ratio: float = 0.9
    confidence: float | None = 0.99
    balance: bool = True
    seed: int = 0
    chunk: int = 4096
    reads: Mapping[str, str] = attrs.field(factory=lambda: {"features": "embedding",
                                                            "probs": "probs"})
    last: Reliable | None = None

    def label(self, inputs: Mapping[str, torch.Tensor]) -> LabelRows:
        features = F.normalize(inputs["features"].float(), dim=1)
        generator = torch.Generator().manual_seed(self.seed)
        self.last = reliable_labels(features, inputs["probs"].float(), self.n_neighbours,
                                    self.ratio, self.confidence, self.balance, generator,
                                    self.chunk)
        index = (self.last.labels != IGNORE).nonzero().squeeze(1)
        return LabelRows.of(index, self.last.labels[index])


def spice_reliable_labeler(n_neighbours: int = 100, ratio: float = 0.9,
                           confidence: float | None = 0.99, balance: bool = True,
                           seed: int = 0, chunk: int = 4096) -> SpiceReliableLabeler:
    """``[pseudo_labeler.NAME] type = "spice_reliable_labeler"``: ``n_neighbours`` N' (100),
    ``ratio`` r (0.9; 0.99 for CIFAR), ``confidence`` (0.99; the code's filter), ``balance``."""
    if n_neighbours < 1:
        raise ComponentError(f"n_neighbours must be at least 1, got {n_neighbours}")
    if not 0 < ratio <= 1:
        raise ComponentError(f"ratio must be in (0, 1], got {ratio}")
    return SpiceReliableLabeler(n_neighbours, ratio, confidence, balance, seed, chunk)
