"""Built-in pseudo-labelers: scores -> (labels, mask)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import torch

from corekit.needs import Need

if TYPE_CHECKING:
    from corekit.step import Step


@attrs.define
class ConfidenceThreshold:
    """FixMatch-style confident labels (Sohn et al. 2020, Eq. 4, arXiv 2001.07685; SPICE stage 3):
    ``labels = argmax p``, ``mask = max p ≥ threshold`` over head ``head`` on view ``view``
    (a name, ``"weak"``, or a position).

    Reads probabilities (a threshold on logits would mean nothing). Per sample, so no gather.
    """

    head: str = "cluster"
    threshold: float = 0.95
    view: int | str = 0

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="probs"), Need.views([self.view])]

    def __call__(self, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            probs = step.output(self.head, self.view)
            confidence, labels = probs.max(dim=1)
        return labels, confidence >= self.threshold
