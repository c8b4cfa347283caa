"""CC's cluster-level losses (Li et al. 2021 Eqs. 4-6): the column-space contrast L_cc and the
convenience sum L_clu = L_cc + R, where R is the core's batch marginal-entropy term.

Each loss is a plain function of the two views' soft assignments (N×M probabilities) and a
small callable that reads them from a step. The callables gather both views' probabilities over
ranks (with gradient) before the loss: the cluster columns have one entry per sample of the
batch and the marginal is a batch estimate, so the loss of the global batch is the
single-device loss. The plain functions stay single-batch.
"""

from __future__ import annotations

import attrs
import torch
from torch.nn import functional as F

from corekit import Need, Step, gather, marginal_entropy_gap

COSINE_EPS = 1e-8


def _column_cosine(v: torch.Tensor, eps: float = COSINE_EPS) -> torch.Tensor:
    """``C[k, l] = v_k·v_l / max(‖v_k‖·‖v_l‖, ε)`` over the rows of ``v`` (Li et al. 2021 Eq. 4); a
    zero row has cosine 0 with every row, its positive included."""
    norms = v.norm(dim=1)
    return (v @ v.T) / (norms[:, None] * norms[None, :]).clamp_min(eps)


def cc_cluster_contrast(ya: torch.Tensor, yb: torch.Tensor,
                        temperature: float = 1.0) -> torch.Tensor:
    """Cluster-level contrastive loss L_cc (Li et al. 2021 Eq. 4-5).

    ``ya``, ``yb`` are the N×M soft assignments (probabilities, not logits) of the
    two views. Rows of ``v = [yaᵀ; ybᵀ]`` (2M×N) are the clusters; ``T = C/τ`` with the
    ε-guarded cosine ``C``; ``ℓ̂_k = −T[k, pos(k)] + log Σ_{l≠k} exp T[k, l]`` with
    ``pos(k) = k ± M``, averaged over the 2M rows. The self term is excluded from the
    denominator (the text and code, not printed Eq. 5). Masks are built from the actual M at
    call time.
    """
    m = ya.shape[1]
    v = torch.cat([ya.T, yb.T])
    logits = _column_cosine(v) / temperature
    self_mask = torch.eye(2 * m, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([torch.arange(m, 2 * m), torch.arange(m)]).to(logits.device)
    return F.cross_entropy(logits, positives)


def cc_cluster_loss(ya: torch.Tensor, yb: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Cluster-head loss L_clu = L_cc + Σ_v (log M − H(p^v)) (Li et al. 2021 Eq. 6).

    The entropy term is the official code's form: one term per view, summed, each
    0 at a uniform batch marginal. The AAAI camera-ready's −H(p^a) − H(p^b) differs by the
    constant 2 log M and has the same gradient; this follows the code.
    """
    return (cc_cluster_contrast(ya, yb, temperature)
            + marginal_entropy_gap(ya) + marginal_entropy_gap(yb))


@attrs.define
class ClusterContrast:
    """L_cc between views 0 and 1 of head ``head`` (probabilities), τ_C = 1.0 (Li et al. 2021
    Eq. 5). Registered as ``cc_cluster_contrast``.

    Reads probabilities; both views are gathered over ranks first, so a column is
    the cluster over the global batch.
    """

    head: str = "cluster"
    temperature: float = 1.0

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="probs"), Need.views(2)]

    def __call__(self, step: Step) -> torch.Tensor:
        return cc_cluster_contrast(gather(step.output(self.head, 0)),
                                   gather(step.output(self.head, 1)), self.temperature)


@attrs.define
class ClusterLoss:
    """L_clu = L_cc + R between views 0 and 1 of head ``head`` (Li et al. 2021 Eq. 6,
    code form of R). Registered as ``cc_cluster_loss``; a recipe may instead list
    ``cc_cluster_contrast`` and the core's ``batch_marginal_entropy`` as two terms.

    Reads probabilities; both views are gathered over ranks first, for the contrast and the
    marginal alike.
    """

    head: str = "cluster"
    temperature: float = 1.0

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="probs"), Need.views(2)]

    def __call__(self, step: Step) -> torch.Tensor:
        return cc_cluster_loss(gather(step.output(self.head, 0)),
                               gather(step.output(self.head, 1)), self.temperature)
