"""The latent noise stage in front of the predictor: ProPos's positive sampling, HaDis's
"diffused sampling" (HaDis Eq. 2, arXiv 2401.14038)."""

from __future__ import annotations

import torch
from torch import nn

from corekit import StageContext


class LatentGaussianNoise(nn.Module):
    """``z = q + σ·δ``, ``δ ~ N(0, I)`` drawn fresh per call (ProPos PSA; HaDis Eq. 2 with
    ε = σ, arXiv 2401.14038).

    The noise goes on the raw, un-normalised projector output ``q`` (as in the official code),
    so ``σ`` is relative to the projector's output scale. ``σ = 0`` for 0-based epochs before
    ``start_epoch``: the official code switches the noise off during the LR warm-up, which the
    paper never mentions (this follows the code). The noise is a training-time operation:
    in eval mode the head is the identity. ``out_dim = in_dim``; ``produces = "embedding"``
    (the raw projection plus noise; not unit norm).

    The predictor reads this head, so one draw per view and step feeds every loss that reads
    the prediction (DSA and HSD share it, as in the official step): the step caches head
    outputs per view.
    """

    def __init__(self, in_dim: int, std: float = 0.001, start_epoch: int = 0) -> None:
        super().__init__()
        if std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.out_dim = in_dim
        self.produces = "embedding"
        self.std = float(std)
        self.start_epoch = start_epoch
        self.epoch = 0

    @property
    def sigma(self) -> float:
        """The noise scale of the current epoch: ``std`` from ``start_epoch`` on, else 0."""
        return self.std if self.epoch >= self.start_epoch else 0.0

    def on_epoch_start(self, ctx: StageContext) -> None:
        """Lifecycle hook: the epoch about to run (0-based ``ctx.epoch``) sets ``sigma``."""
        self.epoch = ctx.epoch

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma
        if not self.training or sigma == 0.0:
            return q
        return q + sigma * torch.randn_like(q)

    def extra_repr(self) -> str:
        return f"dim={self.out_dim}, std={self.std}, start_epoch={self.start_epoch}"
