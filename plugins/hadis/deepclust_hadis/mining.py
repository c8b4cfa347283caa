"""Hard-pair mining of HSD: split the batch per anchor, keep the hardest positive and negative,
weight each by its gap to the teacher's own distance (HaDis Eqs. 4-6, arXiv 2401.14038)."""

from __future__ import annotations

import attrs
import torch
from torch.nn import functional as F

DISTANCE_FLOOR = 1e-12


def distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``D_ij = ‖x_i − y_j‖`` via ``‖x‖² + ‖y‖² − 2xᵀy``, clamped at 1e-12 before the square
    root (the clamp keeps the sqrt gradient finite)."""
    squared = x.pow(2).sum(dim=1, keepdim=True) + y.pow(2).sum(dim=1) - 2.0 * x @ y.T
    return squared.clamp_min(DISTANCE_FLOOR).sqrt()


@attrs.frozen
class HardPairs:
    """The mined pair of every anchor row ``i`` (HaDis Eqs. 4-6).

    ``threshold`` = ``S_ii`` (B); ``positive`` = the B×B mask of the sets ``P_i`` (row i);
    ``pos_index``/``neg_index`` = ``j⁺``/``j⁻``; ``nu_pos``/``nu_neg`` = ``ν⁺``/``ν⁻``, the
    only tensors with gradient (into the candidates' predictions); ``w_pos``/``w_neg`` =
    ``w⁺``/``w⁻`` (detached, as in the official code); ``has_negative`` is False for an anchor
    whose every candidate is positive; its ``ν⁻`` and ``w⁻`` are then 0.
    """

    threshold: torch.Tensor
    positive: torch.Tensor
    pos_index: torch.Tensor
    neg_index: torch.Tensor
    nu_pos: torch.Tensor
    nu_neg: torch.Tensor
    w_pos: torch.Tensor
    w_neg: torch.Tensor
    has_negative: torch.Tensor


def mine_hard_pairs(k: torch.Tensor, p: torch.Tensor) -> HardPairs:
    """Mine HSD's hard pairs from teacher embeddings ``k`` (B×D, unit) and raw student
    predictions ``p`` (B×D, normalised here), HaDis Eqs. 4-6 (arXiv 2401.14038).

    ``T_ij = ‖k_i − k_j‖`` with an exactly zero diagonal, ``S_ij = ‖k_i − p̂_j‖``.
    Per-anchor split with threshold ``r_i = S_ii``: ``P_i = {j : T_ij ≤ r_i}`` (ties go to the
    positives; the anchor itself is always positive), ``N_i`` the rest. This is the code's
    rule; HaDis Eq. 4 as printed uses a per-candidate threshold (this follows the code).
    ``ν⁺_i = max_{P_i} S_ij``, ``ν⁻_i = min_{N_i} S_ij`` by masked max/min with ∓inf;
    ``w⁺ = max(ν⁺ − T_{ij⁺}, 0)``, ``w⁻ = max(T_{ij⁻} − ν⁻, 0)``, both detached. The
    teacher ``k`` carries no gradient (the anchor is a teacher vector).
    """
    k = k.detach()
    predictions = F.normalize(p, dim=1)
    eye = torch.eye(k.shape[0], dtype=torch.bool, device=k.device)
    teacher = distances(k, k).masked_fill(eye, 0.0)
    cross = distances(k, predictions)
    threshold = cross.diagonal().detach()
    positive = teacher <= threshold.unsqueeze(1)
    has_negative = (~positive).any(dim=1)
    nu_pos, pos_index = cross.masked_fill(~positive, float("-inf")).max(dim=1)
    nearest, neg_index = cross.masked_fill(positive, float("inf")).min(dim=1)
    nu_neg = torch.where(has_negative, nearest, torch.zeros_like(nearest))
    t_pos = teacher.gather(1, pos_index.unsqueeze(1)).squeeze(1)
    t_neg = teacher.gather(1, neg_index.unsqueeze(1)).squeeze(1)
    w_pos = (nu_pos.detach() - t_pos).clamp_min(0.0)
    w_neg = torch.where(has_negative, (t_neg - nu_neg.detach()).clamp_min(0.0),
                        torch.zeros_like(t_neg))
    return HardPairs(threshold, positive, pos_index, neg_index, nu_pos, nu_neg, w_pos, w_neg,
                     has_negative)
