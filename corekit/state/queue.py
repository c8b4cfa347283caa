"""A FIFO queue of recent feature rows (MoCo's keys, DigPro's 2560-slot bank)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import nn
from torch.nn import functional as F

from corekit.distributed import gather
from corekit.network import Network
from corekit.parts import source_parts

if TYPE_CHECKING:
    from corekit.needs import Need
    from corekit.step import Step

Rule = Literal["wrap", "truncate"]


class Queue(nn.Module):
    """``(size, d)`` rows, oldest overwritten first; starts as random unit rows.

    After each optimizer step it pushes the step's ``source`` outputs of ``views`` (rows
    concatenated in view order, L2-normalised with ``normalize``, gathered over ranks).
    ``rule = "wrap"`` writes circularly (MoCo). ``rule = "truncate"`` is
    lightly ≤ 1.4.24's ring that DigPro's code uses: when ``ptr + r ≥ size``
    only the first ``size − ptr`` rows are written, the rest dropped, and ``ptr`` returns to 0.
    """

    def __init__(self, network: Network, size: int, source: str = "online:proj",
                 dim: int | None = None, views: list[int] | None = None, normalize: bool = True,
                 rule: Rule = "wrap", generator: torch.Generator | None = None) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.branch, self.part = source_parts(source)
        width = dim or network.out_dim(self.part)
        rows = F.normalize(torch.randn(size, width, generator=generator), dim=1)
        self.register_buffer("rows", rows)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.views = list(views if views is not None else [0])
        self.normalize = normalize
        self.rule = rule

    @property
    def size(self) -> int:
        return self.rows.shape[0]

    def needs(self) -> list[Need]:
        from corekit.needs import Need

        return [Need.output(self.part, self.branch), Need.views(max(self.views) + 1)]

    def read(self) -> torch.Tensor:
        """All rows, ``(size, d)``."""
        return self.rows

    @torch.no_grad()
    def push(self, rows: torch.Tensor) -> None:
        """Enqueue ``rows`` (r, d) by the queue's rule."""
        rows = rows.detach().to(self.rows.dtype)
        ptr, size, r = int(self.ptr), self.size, rows.shape[0]
        if self.rule == "truncate":
            if ptr + r >= size:
                self.rows[ptr:] = rows[: size - ptr]
                self.ptr.fill_(0)
            else:
                self.rows[ptr:ptr + r] = rows
                self.ptr.fill_(ptr + r)
            return
        rows = rows[-size:]
        slots = (ptr + torch.arange(rows.shape[0], device=self.rows.device)) % size
        self.rows[slots] = rows
        self.ptr.fill_((ptr + rows.shape[0]) % size)

    def after_optimizer_step(self, step: Step) -> None:
        rows = torch.cat([step.output(self.part, v, self.branch) for v in self.views])
        if self.normalize:
            rows = F.normalize(rows.float(), dim=1)
        self.push(gather(rows))
