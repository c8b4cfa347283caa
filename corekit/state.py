"""Training state that several methods share: EMA target, memory bank, pseudo-labels."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from corekit.network import Network

if TYPE_CHECKING:
    from corekit.step import Step


class EMATarget(nn.Module):
    """BYOL target network: ``θ_t ← m·θ_t + (1 − m)·θ_s`` on parameters only (hadis.md §2.7).

    Buffers (BatchNorm running statistics) are the target's own, accumulated by its
    train-mode forwards. ``schedule="cosine"`` raises ``m`` to 1 over training:
    ``m(n) = 1 − (1 − m₀)(cos(π n / N) + 1)/2`` (hadis.md C11).
    """

    def __init__(self, online: Network, parts: list[str], momentum: float,
                 schedule: str = "constant", total_steps: int = 1) -> None:
        super().__init__()
        self.network = online.subnetwork(parts)
        self.network.requires_grad_(False)
        self.base_momentum = momentum
        self.schedule = schedule
        self.total_steps = max(total_steps, 1)

    def momentum(self, step: int) -> float:
        if self.schedule == "cosine":
            progress = math.cos(math.pi * step / self.total_steps)
            return 1 - (1 - self.base_momentum) * (progress + 1) / 2
        return self.base_momentum

    @torch.no_grad()
    def update(self, online: Network, step: int) -> None:
        m = self.momentum(step)
        for name, target_param in self.network.named_parameters():
            target_param.lerp_(online.get_parameter(name).detach(), 1 - m)

    def after_optimizer_step(self, step: Step) -> None:
        self.update(step.model.online, step.global_step)


class MemoryBank(nn.Module):
    """One L2-normalised feature per dataset index, updated by momentum after each optimizer
    step: ``v_i ← n̂(m·v_i + (1 − m)·f_i)`` (Wu et al. 2018, Eq. 8; IDFD/cIDFD memory bank)."""

    def __init__(self, size: int, dim: int, source: str, momentum: float = 0.5, view: int = 0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        init = torch.randn(size, dim, generator=generator)
        self.register_buffer("features", nn.functional.normalize(init, dim=1))
        self.branch, self.name = source.split(":") if ":" in source else ("online", source)
        self.momentum = momentum
        self.view = view

    @torch.no_grad()
    def update(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        fresh = nn.functional.normalize(features.detach().float(), dim=1)
        mixed = self.momentum * self.features[indices] + (1 - self.momentum) * fresh
        self.features[indices] = nn.functional.normalize(mixed, dim=1)

    def after_optimizer_step(self, step: Step) -> None:
        self.update(step.indices, step.output(self.name, self.view, self.branch))


class PseudoLabels(nn.Module):
    """The pseudo-label buffer: one cluster id per dataset index (−1 = none yet), written by
    the E-step and read by losses through ``step.labels()`` (hadis.md §2.5)."""

    def __init__(self, size: int, n_clusters: int) -> None:
        super().__init__()
        self.n_clusters = n_clusters
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("centroids", torch.zeros(0))

    def write(self, labels: torch.Tensor, centroids: torch.Tensor) -> None:
        self.labels = labels.to(self.labels.device, torch.long)
        self.centroids = centroids.detach().to(self.labels.device, torch.float32)

    @property
    def ready(self) -> bool:
        return bool((self.labels >= 0).all())
