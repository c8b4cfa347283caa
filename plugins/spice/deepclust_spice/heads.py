"""SPICE's heads (arXiv 2103.09382, §III and §IV-B).

``moco_projection`` is stage 1's 512 → 512 → 128 MLP with L2-normalised output.
``spice_multi_head`` holds H independent clustering heads 512 → 512 → K + softmax on one input,
stacked: ``(B, D) -> (B, H, K)`` (a ``selection`` state keeps one of them).
``spice_stack_flat`` shows a stack to a reader that takes one output (a dataset-level labeler):
``(B, H, K) -> (B, H·K)``. ``linear_classifier`` is stage 3's last layer (logits).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

from corekit import ClusterHead, MLPProjector


def moco_projection(in_dim: int, hidden: int = 512, out_dim: int = 128) -> MLPProjector:
    """MoCo-v2's projection g (§III-A, arXiv 2103.09382): Linear(in, 512) → ReLU →
    Linear(512, 128), rows L2-normalised (``produces = "unit"``); ``(B, in_dim) -> (B, 128)``."""
    return MLPProjector(in_dim, hidden=hidden, out_dim=out_dim, layers=2, batch_norm=False,
                        normalize=True)


class SpiceMultiHead(nn.Module):
    """H clustering heads (§III-B and §IV-B, arXiv 2103.09382: D-D-K): each
    ``Linear(D, hidden) → ReLU → Linear(hidden, K) → softmax`` (a core ``ClusterHead``;
    267,786 parameters for D = 512, K = 10), different random initialisations, one input.
    ``(B, D) -> (B, H, K)``, rows on the simplex (``produces = "probs"``); ``stack = H``;
    ``select(h)`` is a copy of head ``h``."""

    def __init__(self, in_dim: int, n_clusters: int, heads: int = 10,
                 hidden: int = 512) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be at least 1, not {heads}")
        self.heads = nn.ModuleList(ClusterHead(in_dim, n_clusters, hidden)
                                   for _ in range(heads))
        self.out_dim = n_clusters
        self.stack = heads
        self.produces = "probs"

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(h) for head in self.heads], dim=1)

    def select(self, index: int) -> ClusterHead:
        """A copy of head ``index``: ``(B, D) -> (B, K)``."""
        return copy.deepcopy(self.heads[index])


class StackFlat(nn.Module):
    """``(B, H, K) -> (B, H·K)``: head ``h``'s probabilities at columns ``h·K .. h·K + K − 1``.
    No parameters. A dataset-level labeler reads a stack through it (the core refuses a stacked
    labeler input). ``produces = "probs"``: each of its H blocks of K columns is on the simplex
    (a row sums to H), which is what ``spice_prototype_labeler`` reads; it checks the blocks
    when it labels, so a flattened stack of logits is refused there."""

    def __init__(self, in_dim: int, heads: int = 10) -> None:
        super().__init__()
        self.out_dim = in_dim * heads
        self.produces = "probs"

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.flatten(1)


def spice_stack_flat(in_dim: int, heads: int = 10) -> StackFlat:
    return StackFlat(in_dim, heads)


class LinearClassifier(nn.Module):
    """Stage 3's classifier: ``Linear(D, K)`` ``(B, D) -> (B, K)``, bias 0 (FixMatch's
    initialisation). ``output = "probs"`` (default) ends in a softmax, so the core's
    ``confidence_threshold`` reads it and ``cross_entropy`` takes the log of its
    probabilities (the same values as CE on the logits: stage 3's loss is the
    ordinary single-softmax CE, Eq. 9, arXiv 2103.09382); ``"logits"`` skips it."""

    def __init__(self, in_dim: int, n_clusters: int,
                 output: Literal["probs", "logits"] = "probs") -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, n_clusters)
        nn.init.zeros_(self.linear.bias)
        self.out_dim = n_clusters
        self.produces: Literal["probs", "logits"] = output

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.linear(h)
        return logits.softmax(dim=1) if self.produces == "probs" else logits
