"""ProPos's two losses: positive sampling alignment (PSA) and prototype scattering (PSL).

Each is a plain function of tensors, written next to its equation, plus a small loss class
that reads the step's outputs for both directions and averages them.
Across ranks: PSA is a per-sample mean and stays local; PSL builds prototypes from the batch, so
its class gathers ``q``, ``k`` and the labels first (as the official code does), and the plain
functions stay single-batch.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch.nn import functional as F

from corekit import Need, Step, gather
from deepclust_propos.directions import symmetric, teacher_embedding

NEGATIVES = ("student", "teacher")


def psa(p: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """One direction of PSA / HaDis DSA: ``(1/B) Σ_i −2·cos(p_i, k_i)``.

    ``p`` (B×D) are raw student predictions of the noisy projection, ``k`` (B×D) the teacher
    embeddings of the other view. This is the code form; HaDis's Eq. 3 (arXiv 2401.14038)
    ``‖n̂(p) − k‖²`` is the same up to the constant 2. Range [−2, 2]; invariant to positive
    row scales of ``p`` and ``k``.
    """
    return -2.0 * F.cosine_similarity(p, k, dim=1, eps=1e-8).mean()


def prototypes(x: torch.Tensor, labels: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """``u_c = n̂(mean_{i: y_i = c} x_i)``; the zero vector for a cluster absent from ``labels``
    (HaDis Eqs. 10-11 with hard labels, arXiv 2401.14038: L1-normalised one-hot weights, product,
    then L2 norm)."""
    onehot = F.one_hot(labels, n_clusters).T.to(x.dtype)
    weights = onehot / onehot.sum(dim=1, keepdim=True).clamp_min(1.0)
    return F.normalize(weights @ x, dim=1)


def psl(
    q: torch.Tensor,
    k: torch.Tensor,
    labels: torch.Tensor,
    n_clusters: int,
    temperature: float = 0.5,
    negatives: str = "student",
    absent_logit: float = -10.0,
) -> torch.Tensor:
    """One direction of PSL / HaDis PCL (Eq. 9) / DigPro prototype aggregation (Eq. 7).

    Student prototypes ``u^s`` from ``n̂(q)`` (with gradient), teacher prototypes ``u^t``
    from ``k`` (no gradient), by the hard labels ``labels`` of the last E-step. Logits
    ``A_cc = u^s_c·u^t_c/τ`` and, for ``j ≠ c``, ``A_cj = u^s_c·u^s_j/τ`` with
    ``negatives="student"`` (the code of ProPos, HaDis and DigPro) or ``u^s_c·u^t_j/τ`` with
    ``negatives="teacher"`` (HaDis Eq. 9 as printed; the default follows the code).
    Every column of a cluster absent from the batch is set to ``absent_logit`` (−10 in the
    code; ``-inf`` nulls it exactly), absent rows are dropped, and the loss is the
    mean over present clusters of ``−A_cc + log Σ_j exp A_cj``.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    student = prototypes(F.normalize(q, dim=1), labels, n_clusters)
    teacher = prototypes(F.normalize(k, dim=1), labels, n_clusters).detach()
    others = student if negatives == "student" else teacher
    positive = (student * teacher).sum(dim=1) / temperature
    logits = student @ others.T / temperature
    diagonal = torch.eye(n_clusters, dtype=torch.bool, device=logits.device)
    logits = torch.where(diagonal, positive.unsqueeze(1), logits)
    present = torch.bincount(labels, minlength=n_clusters) > 0
    logits = logits.masked_fill(~present.unsqueeze(0), absent_logit)
    targets = torch.arange(n_clusters, device=logits.device)
    return F.cross_entropy(logits[present], targets[present])


@attrs.define
class PSA:
    """ProPos positive sampling alignment = HaDis DSA = DigPro L_base (HaDis Eq. 3,
    arXiv 2401.14038, code form ``−2·cos``), averaged over both directions.

    Reads the student prediction ``pred`` (the predictor on the latent-noise head, so the
    recipe's noise head supplies σ) and the teacher head ``target``, normalised; both read as
    embeddings.

    No gather: the loss is a mean of per-sample terms, so under DDP the average of the ranks'
    gradients already is the global-batch gradient (the official code computes it on the local
    batch too).
    """

    pred: str = "pred"
    target: str = "proj"

    def needs(self) -> list[Need]:
        return [Need.output(self.pred, reads="embedding"),
                Need.output(self.target, "target", reads="embedding"), Need.views(2)]

    def __call__(self, step: Step) -> torch.Tensor:
        return symmetric(lambda s, t: psa(step.output(self.pred, s),
                                          teacher_embedding(step, self.target, t)))


@attrs.define
class PSL:
    """ProPos prototype scattering loss = HaDis PCL (Eqs. 9-11, arXiv 2401.14038) = DigPro
    prototype aggregation (Eq. 7, arXiv 2401.13581), code semantics, averaged over both directions.

    Reads the clean student projection ``proj`` (no noise, no predictor), the teacher head
    ``target`` (normalised) and the batch's pseudo-labels. ``n_clusters`` is supplied by the
    composer. HaDis Eqs. 10-11 weight prototypes by a posterior; the code (followed here) uses
    the hard labels of the last E-step.

    Across ranks the prototypes are those of the global batch: ``q`` (with gradient), ``k`` and
    the labels are gathered before :func:`psl`, as in the official code (ProPos/HaDis
    ``forward_loss``: ``GatherLayer`` on ``q``, ``concat_all_gather`` on ``k`` and the labels).
    One difference: the official code finds the absent clusters from the local labels while
    building prototypes from the gathered ones; here both use the gathered labels, so every rank
    computes the single-device value (identical on one GPU, the only setting HaDis reports).
    """

    n_clusters: int = attrs.field(kw_only=True)
    proj: str = "proj"
    target: str = "proj"
    temperature: float = 0.5
    negatives: Literal["student", "teacher"] = attrs.field(
        default="student", validator=attrs.validators.in_(NEGATIVES))
    absent_logit: float = -10.0

    def needs(self) -> list[Need]:
        return [Need.output(self.proj, reads="embedding"),
                Need.output(self.target, "target", reads="embedding"), Need.labels(),
                Need.views(2)]

    def __call__(self, step: Step) -> torch.Tensor:
        labels = gather(step.labels())
        return symmetric(lambda s, t: psl(
            gather(step.output(self.proj, s)), gather(teacher_embedding(step, self.target, t)),
            labels, self.n_clusters, self.temperature, self.negatives, self.absent_logit))
