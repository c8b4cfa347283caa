"""SPICE's stage-2 loss: cross-entropy applied to a head's probabilities as if they were logits,
the "double softmax" (Eq. 5, arXiv 2103.09382, and its Appendix A; applied to
logits instead it is the plain-CE ablation, Table VII).

``double_softmax_ce`` and ``stacked_double_softmax_ce`` are pure tensor functions;
``DoubleSoftmaxCE`` reads a step (``[losses.NAME] type = "double_softmax_ce"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import torch
from torch.nn import functional as F

from corekit import Need

if TYPE_CHECKING:
    from corekit import Step


def double_softmax_ce(probs: torch.Tensor, labels: torch.Tensor,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """``ℓ_i = −p_{i,y_i} + log Σ_j exp p_{ij}``, the (weighted) mean over rows (Eq. 5, arXiv
    2103.09382). ``probs`` (R, K) rows on the simplex, ``labels`` (R,), ``weight`` (R,) or
    None. Its floor is ``log(1 + (K − 1)/e)``; uniform rows give ``log K``."""
    per_row = F.cross_entropy(probs, labels.long(), reduction="none")
    if weight is None:
        return per_row.mean()
    return (weight * per_row).sum() / weight.sum().clamp_min(1e-12)


def stacked_double_softmax_ce(probs: torch.Tensor, image: torch.Tensor, head: torch.Tensor,
                              label: torch.Tensor, weight: torch.Tensor | None = None
                              ) -> torch.Tensor:
    """Mean over heads of each head's ``double_softmax_ce`` on its own pairs (Eq. 5, arXiv
    2103.09382; heads do not interact). ``probs`` (B, H, K); pair r is batch image
    ``image[r]``, head ``head[r]``, cluster ``label[r]`` (R,), weight ``weight[r]``. A head
    with no pair in the batch is left out of the mean; 0 (with a gradient path) when no pair
    at all."""
    if image.numel() == 0:
        return probs.sum() * 0
    weight = torch.ones_like(image, dtype=probs.dtype) if weight is None else weight
    per_pair = F.cross_entropy(probs[image, head], label.long(), reduction="none")
    n_heads = probs.shape[1]
    total = torch.zeros(n_heads, dtype=probs.dtype, device=probs.device)
    mass = torch.zeros(n_heads, dtype=probs.dtype, device=probs.device)
    total = total.index_add(0, head, weight * per_pair)
    mass = mass.index_add(0, head, weight.to(probs.dtype))
    present = mass > 0
    return (total[present] / mass[present]).mean()


def batch_pairs(indices: torch.Tensor, rows_index: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (batch position b, row r) with ``indices[b] == rows_index[r]``: ``indices`` (B,)
    dataset indices of the batch, ``rows_index`` (R,) the images of the targets rows (each may
    repeat). Returns ``(b, r)``, each (P,)."""
    rows_index = rows_index.to(indices.device)
    candidates = torch.isin(rows_index, indices).nonzero().squeeze(1)
    match = indices[:, None] == rows_index[candidates][None, :]
    b, c = match.nonzero(as_tuple=True)
    return b, candidates[c]


@attrs.define
class DoubleSoftmaxCE:
    """``double_softmax_ce`` of head ``head`` on view ``view`` against ``targets``.

    On a stack (``spice_multi_head``, (B, H, K)) the targets are the rows of a ``targets``
    state written by ``spice_prototype_labeler`` (label ``h·K + k``: head h, cluster k). Every
    row of a batch image counts, so an image labelled for two clusters gives two terms (no
    de-duplication); the loss is the mean over heads. On one head (B, K) it reads
    ``step.targets(targets)`` (a targets state or a per-step labeler). Reads probabilities: a
    head of logits is refused when the recipe is composed."""

    head: str = "heads"
    targets: str = "targets"
    view: int | str = 0

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="probs", stack=True), Need.views([self.view]),
                Need.targets(self.targets), Need("spice_estep_sizes", self.targets)]

    def __call__(self, step: Step) -> torch.Tensor:
        probs = step.output(self.head, self.view)
        if probs.dim() == 2:
            given = step.targets(self.targets)
            if not bool(given.mask.any()):
                return probs.sum() * 0
            return double_softmax_ce(probs[given.mask], given.labels[given.mask],
                                     given.weight[given.mask])
        rows = step.state(self.targets).rows()
        b, r = batch_pairs(step.indices.to(probs.device), rows.index)
        k = probs.shape[2]
        label = rows.label.to(probs.device)[r]
        return stacked_double_softmax_ce(probs, b, label // k, label % k,
                                         rows.weight.to(probs.device)[r])
