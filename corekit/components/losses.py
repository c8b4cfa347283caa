"""Built-in losses. Each is a plain function of tensors (readable next to its equation) and a
small callable that reads the named outputs of a step and declares them in ``needs()``.

The plain functions see one batch and know nothing of processes. The callables of batch-level
losses (whose value couples the samples of a batch) pass their inputs through
``corekit.distributed.gather`` first, so under torchrun every rank computes the loss of the
global batch, exactly the single-process value; per-sample means need no gather.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs
import torch
from torch.nn import functional as F

from corekit.distributed import gather
from corekit.needs import Need

if TYPE_CHECKING:
    from corekit.step import Step


def nt_xent(za: torch.Tensor, zb: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (SimCLR, Chen et al. 2020, Eq. 1; CC's instance loss, Li et al. 2021 Eqs. 2-3).

    ``u = [n̂(za); n̂(zb)]``, ``S = u uᵀ/τ``; ``ℓ_r = −S[r, pos(r)] + log Σ_{k≠r} exp S[r, k]``;
    mean over the 2N rows. The self-similarity is excluded (as CC's text and code do;
    Eq. 2 as printed keeps it).
    """
    n = za.shape[0]
    u = F.normalize(torch.cat([za, zb]), dim=1)
    sim = u @ u.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(sim.device)
    return F.cross_entropy(sim, positives)


def marginal_entropy_gap(probs: torch.Tensor) -> torch.Tensor:
    """``log M − H(p)`` with ``p`` the batch marginal of the soft assignments ``probs`` (N×M)
    (CC's entropy term, Li et al. 2021 Eq. 6, in its official code's form; 0 at the uniform
    marginal). Clamping inside the log keeps an empty cluster's value 0 and its gradient finite,
    where ``xlogy`` gives a NaN gradient."""
    probs = probs.float()
    p = probs.sum(0) / probs.sum()
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return torch.log(torch.tensor(float(probs.shape[1]), device=probs.device)) - entropy


@attrs.define
class NTXent:
    """NT-Xent between views 0 and 1 of head ``head`` (SimCLR Eq. 1; Li et al. 2021 Eqs. 2-3).

    Reads an embedding (``unit`` rows too; normalised inside). Both views are gathered over
    ranks (with gradient) before the loss, so every other view of the global batch is a
    negative, as on one device.
    """

    head: str = "proj"
    temperature: float = 0.5

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="embedding"), Need.views(2)]

    def __call__(self, step: Step) -> torch.Tensor:
        return nt_xent(gather(step.output(self.head, 0)), gather(step.output(self.head, 1)),
                       self.temperature)


@attrs.define
class BatchMarginalEntropy:
    """Σ over views of ``log M − H(p^v)``: pushes each view's batch cluster marginal towards
    uniform (CC, Li et al. 2021 Eq. 6, in its official code's form). Reads probabilities, not
    logits.

    The marginal is a batch estimate, so each view's probabilities are gathered over ranks
    (with gradient) first: the marginal of the global batch, as on one device.
    """

    head: str = "cluster"
    views: int = 2

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="probs"), Need.views(self.views)]

    def __call__(self, step: Step) -> torch.Tensor:
        return sum(marginal_entropy_gap(gather(step.output(self.head, v)))
                   for v in range(self.views))


def target_cross_entropy(scores: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                         are_probs: bool, reduction: Literal["batch", "labelled"]
                         ) -> torch.Tensor:
    """``Σ_b w_b · (−log p_b[y_b]) / D`` over the B images of a batch: ``scores`` (B, K) logits
    (``are_probs`` false) or probabilities, ``labels`` (B,) (ignored where ``weight`` (B,) is 0),
    ``D = B`` for ``reduction = "batch"`` (FixMatch, Sohn et al., arXiv 2001.07685, Eq. 4: the
    unlabelled images count in the mean) or ``D = Σ_b w_b`` for ``"labelled"``; 0 (with a
    gradient path) when no image has a target."""
    log_p = scores.clamp_min(1e-12).log() if are_probs else F.log_softmax(scores, dim=1)
    picked = log_p.gather(1, labels.clamp_min(0).unsqueeze(1)).squeeze(1)
    total = -(weight * picked).sum()
    if reduction == "batch":
        return total / scores.shape[0]
    return total / weight.sum().clamp_min(1e-12) if bool(weight.sum() > 0) else total * 0


@attrs.define
class TargetCrossEntropy:
    """Cross-entropy of head ``head`` on view ``view`` (a name or a position) of stream
    ``stream`` (``train.streams``; default the step's own) against the targets ``targets``: the
    rows of a ``targets`` state a dataset-level labeler wrote, or a per-step labeler's
    confident labels on that stream (``target_cross_entropy``). Reads logits or
    probabilities. Per sample, so no gather.
    """

    head: str = "cluster"
    targets: str = "targets"
    view: int | str = 0
    reduction: Literal["batch", "labelled"] = "labelled"
    stream: str | None = None

    def needs(self) -> list[Need]:
        needs = [Need.output(self.head, reads="scores"), Need.views([self.view]),
                 Need.targets(self.targets)]
        return needs + ([Need.stream(self.stream)] if self.stream else [])

    def __call__(self, step: Step) -> torch.Tensor:
        if self.stream:
            step = step.stream(self.stream)
        scores = step.output(self.head, self.view)
        given = step.targets(self.targets)
        return target_cross_entropy(scores, given.labels, given.weight,
                                    step.produces(self.head) == "probs", self.reduction)
