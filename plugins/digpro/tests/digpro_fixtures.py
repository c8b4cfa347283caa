"""Helpers of the DigPro tests (imported by the test modules): the spec's ``u(θ, s)``, float64
row stacks, and a fixed-tensor stand-in for ``corekit.Step``."""

from __future__ import annotations

import math

import torch


def u(theta: float, scale: float = 1.0) -> list[float]:
    """The spec's helper ``u(θ, s) = s·(cos θ, sin θ)``, θ in degrees (specs/digpro.md §9)."""
    rad = math.radians(theta)
    return [scale * math.cos(rad), scale * math.sin(rad)]


def rows(*vectors: list[float]) -> torch.Tensor:
    return torch.tensor(vectors, dtype=torch.float64)


class FixedStep:
    """A stand-in for ``corekit.Step`` that returns fixed tensors: ``online[(part, view)]``,
    ``target[(part, view)]`` and ``labels``; enough for a loss's ``__call__``."""

    def __init__(self, online: dict, target: dict | None = None,
                 labels: torch.Tensor | None = None) -> None:
        self.online, self.target, self._labels = online, target or {}, labels

    def output(self, name: str, view: int = 0, branch: str = "online") -> torch.Tensor:
        table = self.online if branch == "online" else self.target
        return table[(name, view)]

    def labels(self) -> torch.Tensor:
        assert self._labels is not None
        return self._labels
