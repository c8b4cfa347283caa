"""HaDis's one new loss: hardness-aware self-distillation (HSD), Eqs. 4-8 of arXiv 2401.14038.

DSA and PCL are ProPos's PSA and PSL (identical code); this plugin registers them under the
HaDis names from ``deepclust_propos`` rather than re-implementing them.
"""

from __future__ import annotations

import attrs
import torch
from deepclust_propos import symmetric, teacher_embedding
from torch.nn import functional as F

from corekit import Need, Step
from deepclust_hadis.mining import HardPairs, mine_hard_pairs


def hsd_anchor_losses(pairs: HardPairs, temperature: float = 0.5) -> torch.Tensor:
    """``ℓ_i = −log(e^{w⁻ν⁻/τ} / (e^{w⁻ν⁻/τ} + e^{w⁺ν⁺/τ})) = softplus((w⁺ν⁺ − w⁻ν⁻)/τ)``
    per anchor (HaDis Eqs. 7-8 in the code's two-logit form).
    ``∂ℓ/∂ν⁺ ≥ 0`` and ``∂ℓ/∂ν⁻ ≤ 0``: the hard positive is pulled in, the hard negative out."""
    margin = pairs.w_pos * pairs.nu_pos - pairs.w_neg * pairs.nu_neg
    return F.softplus(margin / temperature)


def hsd(k: torch.Tensor, p: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """One direction of HSD: mean over anchors of :func:`hsd_anchor_losses` on the pairs mined
    from teacher ``k`` and student predictions ``p``.

    ``τ_h = 0.5`` (HaDis §IV-A) is hard-coded in the official code, independent of the config
    temperature (SMD's public loss defaults to 0.04; HaDis does not use that value).
    """
    return hsd_anchor_losses(mine_hard_pairs(k, p), temperature).mean()


@attrs.define
class HSD:
    """Hardness-aware self-distillation (HaDis Eqs. 4-8, arXiv 2401.14038, code
    semantics), averaged over both directions: teacher ``target`` on one view, student ``pred``
    on the other. Weight 1, active from the first step (Eq. 13 and the code).

    Reads the same ``pred`` as DSA, so both see one noise draw per view and step;
    ``pred`` and ``target`` are read as embeddings (both normalised inside).

    No gather, deliberately: the hard pairs are mined within the local batch of each rank, as
    in the official code (its ``forward_loss`` calls ``hsd(k, predictor(noise_q))`` on the
    local ``k``, not ``all_k``). Under DDP the trained objective is therefore the mean over
    ranks of each rank's local HSD, which equals the single-device loss only on one process.
    """

    pred: str = "pred"
    target: str = "proj"
    temperature: float = 0.5

    def needs(self) -> list[Need]:
        return [Need.output(self.pred, reads="embedding"),
                Need.output(self.target, "target", reads="embedding"), Need.views(2)]

    def __call__(self, step: Step) -> torch.Tensor:
        return symmetric(lambda s, t: hsd(teacher_embedding(step, self.target, t),
                                          step.output(self.pred, s), self.temperature))
