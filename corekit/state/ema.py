"""An exponential moving average of parts of the online network: a target branch."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from corekit.network import Network

if TYPE_CHECKING:
    from corekit.step import Step

Schedule = Literal["constant", "cosine"]
UpdateAt = Literal["after_optimizer_step", "before_backward", "never"]


class EMA(nn.Module):
    """BYOL target network: ``θ_t ← m·θ_t + (1 − m)·θ_s`` on parameters.

    ``parts`` (encoders and heads, with everything they read, shared heads kept shared) are
    deep-copied from the online network, without gradient. Buffers (BatchNorm statistics) are
    the target's own, accumulated by its train-mode forwards, unless ``buffers = true`` copies
    them from the online network at each update (SPICE stage 3's EMA).

    ``schedule = "cosine"`` raises ``m`` to 1 over the stage's ``total_steps`` steps:
    ``m(n) = 1 − (1 − m₀)(cos(π n / N) + 1)/2``, at the step's ``global_step``, which is the
    step on the stage's planned schedule: a time budget that compresses the schedule into
    fewer epochs (``corekit.budget``) still ends it at 1 on the last step. ``update_at`` picks
    the lifecycle point of the scheduled update; ``update(online, m)`` is public so a
    component can add its own (DigPro's double update) and ``override(m)`` replaces the
    momentum of the next scheduled update only.
    """

    def __init__(self, network: Network, parts: list[str] | None = None,
                 momentum: float = 0.996, schedule: Schedule = "constant",
                 buffers: bool = False, update_at: UpdateAt = "after_optimizer_step",
                 total_steps: int = 1) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.parts = list(parts or ["backbone"])
        self.network = network.subnetwork(self.parts)
        self.network.requires_grad_(False)
        self.base_momentum = momentum
        self.schedule = schedule
        self.copy_buffers = buffers
        self.update_at = update_at
        self.total_steps = max(total_steps, 1)
        self._override: float | None = None

    def momentum(self, step: int) -> float:
        """The scheduled momentum at 1-based global step ``step`` of the planned schedule."""
        if self.schedule == "cosine":
            progress = math.cos(math.pi * step / self.total_steps)
            return 1 - (1 - self.base_momentum) * (progress + 1) / 2
        return self.base_momentum

    def override(self, momentum: float) -> None:
        """Use ``momentum`` for the next scheduled update instead of the schedule's."""
        self._override = momentum

    @torch.no_grad()
    def update(self, online: Network, momentum: float) -> None:
        """``θ_t ← m·θ_t + (1 − m)·θ_s`` for every parameter (and buffer with ``buffers``)."""
        for name, target_param in self.network.named_parameters():
            target_param.lerp_(online.get_parameter(name).detach(), 1 - momentum)
        if self.copy_buffers:
            for name, buffer in self.network.named_buffers():
                buffer.copy_(online.get_buffer(name))

    def _scheduled(self, step: Step) -> None:
        momentum = self._override if self._override is not None else \
            self.momentum(step.global_step)
        self._override = None
        self.update(step.model.online, momentum)

    def before_backward(self, step: Step) -> None:
        if self.update_at == "before_backward":
            self._scheduled(step)

    def after_optimizer_step(self, step: Step) -> None:
        if self.update_at == "after_optimizer_step":
            self._scheduled(step)
