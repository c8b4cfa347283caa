"""SCAN's clustering loss (Van Gansbeke et al. 2020, Eq. 2, arXiv 2005.12320): agreement of
each image's cluster probabilities with those of a mined neighbour, plus an entropy term that
spreads the batch over the clusters."""

from __future__ import annotations

import attrs
import torch

from corekit import Need, Step, gather

EPS = 1e-8
ENTROPY_WEIGHT = 5.0


def scan_loss(anchor_probs: torch.Tensor, neighbour_probs: torch.Tensor,
              entropy_weight: float = ENTROPY_WEIGHT, eps: float = EPS) -> torch.Tensor:
    """Λ = −(1/B) Σ_X log⟨Φ(X), Φ(k_X)⟩ + λ Σ_c Φ'_c log Φ'_c, Φ'_c = (1/B) Σ_X Φ_c(X)
    (Eq. 2, arXiv 2005.12320), a scalar ().

    ``anchor_probs`` (B, K) are the cluster probabilities Φ(X) of the batch, ``neighbour_probs``
    (B, K) those of one neighbour k_X ∈ N_X of each; λ = ``entropy_weight`` (5 in the paper's
    code). The dot product and the marginal are clamped at ``eps`` before the log, as in the
    official code. The second term is −λ H(Φ'), so a spread marginal lowers the loss.
    """
    agreement = (anchor_probs * neighbour_probs).sum(dim=1).clamp_min(eps)
    consistency = -agreement.log().mean()
    marginal = anchor_probs.mean(dim=0).clamp_min(eps)
    return consistency + entropy_weight * (marginal * marginal.log()).sum()


@attrs.define
class SCANLoss:
    """SCAN's loss (Eq. 2, arXiv 2005.12320) on head ``head`` (probabilities, view 0) and the
    state ``neighbours`` (type ``scan_neighbours``): the neighbour's probabilities are the head
    applied to the neighbour's stored frozen features (``Step.output_from``), with gradient.
    Registered as ``scan``. Both sides are gathered over ranks first, so the marginal is the
    global batch's."""

    head: str = "cluster"
    neighbours: str = "neighbours"
    entropy_weight: float = ENTROPY_WEIGHT

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="probs"),
                Need.state(self.neighbours, "scan_neighbours")]

    def __call__(self, step: Step) -> torch.Tensor:
        bank = step.state(self.neighbours)
        given = {bank.part: bank.features[bank.sample(step.indices)]}
        return scan_loss(gather(step.output(self.head, 0)),
                         gather(step.output_from(self.head, given)), self.entropy_weight)
