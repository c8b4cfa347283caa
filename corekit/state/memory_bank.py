"""An index-keyed memory bank: one feature row per training image."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn
from torch.nn import functional as F

from corekit.distributed import gather
from corekit.network import Network
from corekit.parts import source_parts

if TYPE_CHECKING:
    from corekit.lifecycle import StageContext
    from corekit.needs import Need
    from corekit.step import Step

Init = Literal["normal", "uniform", "encode"]
Update = Literal["momentum", "fixed"]


class MemoryBank(nn.Module):
    """``(N, d)`` rows keyed by dataset index (Wu et al. 2018, Eq. 8; IDFD, arXiv 2106.00131).

    ``init``: ``normal`` (unit rows of a Gaussian draw), ``uniform`` (i.i.d. U(−a, a) with
    a = 1/√(d/3), so E‖row‖² = 1, rows *not* renormalised: IDFD's code), or
    ``encode`` (one features pass of ``source`` over the whole set at stage start, normalised).
    ``update = "momentum"`` sets ``v_i ← n̂(m·v_i + (1 − m)·n̂(f_i))`` after each optimizer step
    from the step's ``source`` output on ``view`` (the logits of the step used the pre-update
    bank); ``"fixed"`` never changes the rows after init (SPICE's embedding bank).
    ``dim`` defaults to the output width of ``source``'s part.
    """

    def __init__(self, network: Network, n_images: int, source: str = "online:backbone",
                 dim: int | None = None, momentum: float = 0.5, view: int = 0,
                 init: Init = "normal", update: Update = "momentum",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.branch, self.part = source_parts(source)
        self.source = source
        width = dim or network.out_dim(self.part)
        if init == "uniform":
            bound = 1.0 / math.sqrt(width / 3)
            rows = (torch.rand(n_images, width, generator=generator) * 2 - 1) * bound
        else:
            rows = F.normalize(torch.randn(n_images, width, generator=generator), dim=1)
        self.register_buffer("features", rows)
        self.momentum = momentum
        self.view = view
        self.init = init
        self.update_rule = update

    def needs(self) -> list[Need]:
        from corekit.needs import Need

        return [Need.output(self.part, self.branch), Need.views(self.view + 1)]

    def read(self) -> torch.Tensor:
        """All rows, ``(N, d)``; read them without gradient."""
        return self.features

    @torch.no_grad()
    def update(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        """Momentum update of rows ``indices`` (B,) with ``features`` (B, d)."""
        fresh = F.normalize(features.detach().float(), dim=1)
        mixed = self.momentum * self.features[indices] + (1 - self.momentum) * fresh
        self.features[indices] = F.normalize(mixed, dim=1)

    def on_stage_start(self, ctx: StageContext) -> None:
        if self.init == "encode":
            rows = F.normalize(ctx.features(self.source).float(), dim=1)
            self.features.copy_(rows.to(self.features.device))

    def after_optimizer_step(self, step: Step) -> None:
        if self.update_rule == "momentum":  # every rank's rows, so the banks stay equal
            self.update(gather(step.indices),
                        gather(step.output(self.part, self.view, self.branch).detach()))
