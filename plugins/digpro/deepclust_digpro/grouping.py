"""DigPro's dynamic grouping as plain tensor functions (Eqs. 3-6 of arXiv 2401.13581).

SMoG's synchronous momentum grouping (Pang et al., ECCV 2022) as DigPro calls it through
lightly's ``SMoGPrototypes``: ``K`` group vectors ``G`` (K×D) are assigned by cosine, moved
toward the mean of their online members *with gradient*, and the moved groups are the classes
of a cross-entropy. One direction is :func:`dynamic_grouping`; the loss class in
``deepclust_digpro.losses`` runs both directions and commits the groups in between.

The periodic reset re-seats the groups on the k-means centres of the 2560-row bank
(:func:`kmeans_groups`, :func:`is_reset_step`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch.nn import functional as F

LabelBranch = Literal["target", "online"]


@torch.no_grad()
def assign_groups(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``argmax_j cos(x_i, G_j)`` (B,), long, no gradient (argmax is not differentiable).

    ``x`` (B×D) and ``groups`` (K×D) need not be unit rows: both are normalised here
    (DigPro Eq. 3's nearest group; lightly ``SMoGPrototypes.assign_groups``)."""
    return (F.normalize(x, dim=1) @ F.normalize(groups, dim=1).T).argmax(dim=1)


def update_groups(q: torch.Tensor, groups: torch.Tensor, beta: float = 0.99,
                  assignments: torch.Tensor | None = None) -> torch.Tensor:
    """The synchronous group update (DigPro Eq. 6, code semantics).

    ``q`` (B×D): the *raw* (unnormalised) online projections, with gradient; ``groups`` (K×D)
    the old groups ``G``. Each ``q_i`` joins its nearest old group ``a_i`` (cosine,
    :func:`assign_groups` unless ``assignments`` (B,) are given), then for every group ``c``
    with at least one member ``G'_c = β·G_c + (1 − β)·mean_{i: a_i = c} q_i`` and for an empty
    group ``G'_c = G_c`` exactly. No renormalisation of ``G'`` (the code's). The mean keeps the
    graph, so every member of group ``c`` receives ``(1 − β)/n_c`` of ``∂L/∂G'_c``.
    Vectorised with ``index_add`` / ``bincount`` instead of lightly's loop over the groups.
    Returns ``G'`` (K×D), differentiable with respect to ``q``.
    """
    if assignments is None:
        assignments = assign_groups(q, groups)
    n_groups = groups.shape[0]
    groups = groups.to(q.dtype)
    sums = torch.zeros_like(groups).index_add(0, assignments, q)
    counts = torch.bincount(assignments, minlength=n_groups)
    means = sums / counts.clamp_min(1).unsqueeze(1).to(q.dtype)
    moved = beta * groups + (1.0 - beta) * means
    return torch.where((counts > 0).unsqueeze(1), moved, groups)


def group_logits(p: torch.Tensor, groups: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """``ℓ_ij = cos(p_i, G_j)/τ_g`` (B×K), both sides normalised inside (DigPro Eq. 4)."""
    return F.normalize(p, dim=1) @ F.normalize(groups, dim=1).T / temperature


def dynamic_grouping(
    q: torch.Tensor,
    k: torch.Tensor,
    p: torch.Tensor,
    groups: torch.Tensor,
    beta: float = 0.99,
    temperature: float = 0.1,
    *,
    update_before_logits: bool = True,
    label_branch: LabelBranch = "target",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One direction of L_group (DigPro Eqs. 3-6, code semantics).

    Shapes: ``q`` (B×D) raw online projections of this view (grad), ``k`` (B×D) target
    embeddings of the *other* view (no grad), ``p`` (B×D) the query (the clean prediction
    ``g(q)`` in the code; the caller passes ``q`` itself for Eq. 3's literal query),
    ``groups`` (K×D) the groups before this direction. Returns ``(loss, new_groups)``: the
    scalar ``(1/B) Σ_i CE(ℓ_i, t_i)`` and ``G'`` (K×D) *with* its graph; the caller commits
    ``G ← stopgrad(G')`` before the next direction.

    In the code's order (lightly ``SMoGPrototypes``), not Algorithm 1's:

    1. labels ``t_i = argmax_j cos(k_i, G_j)`` from the target branch and the *old* groups
       (Eq. 3's ``μ_i^b``; ``label_branch="online"`` takes ``argmax_j cos(q_i, G_j)``, Eq. 6
       literally);
    2. ``G'`` = :func:`update_groups` of the raw ``q`` on the *old* groups;
    3. logits ``cos(p, G')/τ_g`` with the *updated* groups (``update_before_logits=False``:
       with the old groups, Algorithm 1's order);
    4. cross-entropy against ``t``.
    """
    if label_branch not in ("target", "online"):
        raise ValueError(f"label_branch must be 'target' or 'online', got {label_branch!r}")
    old = groups.detach().to(q.dtype)
    online = assign_groups(q, old)
    labels = assign_groups(k, old) if label_branch == "target" else online
    new_groups = update_groups(q, old, beta, online)
    logits = group_logits(p, new_groups if update_before_logits else old, temperature)
    return F.cross_entropy(logits, labels), new_groups


def is_reset_step(step: int, period: int, previous: int | None = None) -> bool:
    """Whether global step ``step`` (1-based) starts with a group reset: ``n > 1`` and a
    multiple of R reached since the ``previous`` step (default ``step − 1``: then ``n mod R =
    0``, the code's ``n % K == 0``). A budget that compresses the schedule advances the step
    by more than one, and a multiple it passes over still resets. ``period`` 0 never resets."""
    before = step - 1 if previous is None else previous
    return period > 0 and step > 1 and step // period > before // period


def kmeans_groups(rows: torch.Tensor, n_groups: int, seed: int, n_init: int = 1) -> torch.Tensor:
    """``n̂(KMeans_K(rows))`` (K×D): scikit-learn's Euclidean k-means (k-means++ init, Lloyd)
    on the bank rows (M×D; unit rows), centres L2-normalised afterwards.

    The rows are the stored feature vectors (lightly ≥ 1.4.25 stores the bank M×D,
    the official code's transpose is only right before that). Seeded with ``seed``
    (``random_state``; the official reset is unseeded). ``n_init = 1`` is what
    scikit-learn ≥ 1.4 runs for ``KMeans(K)`` with k-means++ (``n_init="auto"``); older
    versions ran 10.
    """
    data = rows.detach().to("cpu", torch.float64).numpy()
    kmeans = KMeans(n_clusters=n_groups, n_init=n_init, random_state=seed % 2**32,
                    algorithm="lloyd")
    centres = kmeans.fit(data).cluster_centers_.astype(np.float64)
    return F.normalize(torch.from_numpy(centres), dim=1).to(rows.device, rows.dtype)
