"""Built-in learning-rate schedules: ``factor(step)``, the multiplier of the base lr.

A schedule is built once per stage as ``factory(steps_per_epoch=S, epochs=E, **options)`` and
asked ``factor(step)`` at every 1-based global step ``step`` of the stage; the engine sets each
group's lr to ``base_lr · factor(step)``. Epoch-based schedules read the fractional epoch
``e = step / S`` (a float, in epochs), so warm-up and decay move every step, not every epoch.
"""

from __future__ import annotations

import abc
import bisect
import math
from typing import Any, Protocol, runtime_checkable

import attrs
from attrs import validators as v


@runtime_checkable
class Schedule(Protocol):
    """What the engine asks of a schedule."""

    def factor(self, step: int) -> float:
        """The multiplier of the base lr at 1-based global step ``step`` of the stage."""
        ...


@attrs.frozen(kw_only=True)
class _Horizon:
    """The stage's length: ``steps_per_epoch`` optimizer steps (≥ 1) per epoch, ``epochs``."""

    steps_per_epoch: int = attrs.field(validator=v.ge(1))
    epochs: int = attrs.field(validator=v.ge(0))


@attrs.frozen(kw_only=True)
class _WarmedUp(_Horizon, abc.ABC):
    """Linear warm-up per step, then ``after_warmup``: the one warm-up of every epoch schedule.

    ``factor(step) = e / W`` while ``e = step / steps_per_epoch < W`` (``W = warmup_epochs``,
    in epochs; 0 = none), else ``after_warmup(e)`` (Goyal et al. 2017 §2.2, gradual warm-up).
    """

    warmup_epochs: float = attrs.field(default=0.0, validator=v.ge(0))

    def factor(self, step: int) -> float:
        e = step / self.steps_per_epoch
        if e < self.warmup_epochs:
            return e / self.warmup_epochs
        return self.after_warmup(e)

    @abc.abstractmethod
    def after_warmup(self, e: float) -> float:
        """The factor at fractional epoch ``e ≥ warmup_epochs``."""


@attrs.frozen(kw_only=True)
class Constant(_WarmedUp):
    """``1`` after the linear warm-up of ``warmup_epochs`` epochs."""

    def after_warmup(self, e: float) -> float:
        return 1.0


@attrs.frozen(kw_only=True)
class Cosine(_WarmedUp):
    """Cosine decay after warm-up (SGDR, Loshchilov & Hutter 2017, Eq. 5 without restarts):

        factor = ½ (1 + cos(π · min(e − W, C) / C))

    with ``C = cosine_epochs`` (default ``epochs − W``), in epochs; the factor stays at its
    value for ``e − W = C`` afterwards. ProPos/HaDis divide by ``C = 1000`` though warm-up
    takes 50 of the 1000 epochs, so the lr ends above 0.
    """

    cosine_epochs: float | None = attrs.field(default=None, validator=v.optional(v.gt(0)))

    def after_warmup(self, e: float) -> float:
        span = self.cosine_epochs or max(self.epochs - self.warmup_epochs, 1e-9)
        return 0.5 * (1 + math.cos(math.pi * min(e - self.warmup_epochs, span) / span))


def _increasing(instance: Any, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if any(m < 0 for m in value) or any(b <= a for a, b in zip(value, value[1:], strict=False)):
        raise ValueError(f"{attribute.name} must be increasing epochs >= 0, got {list(value)}")


@attrs.frozen(kw_only=True)
class MultiStep(_WarmedUp):
    """Step decay after warm-up: ``factor = gamma ** |{m ∈ milestones : m ≤ e}|``.

    ``milestones`` are strictly increasing epochs (fractional allowed) at which the lr is
    multiplied by ``gamma > 0`` (e.g. ``[60, 120, 160]``, ``gamma = 0.2``).
    """

    milestones: tuple[float, ...] = attrs.field(converter=tuple, validator=_increasing)
    gamma: float = attrs.field(default=0.1, validator=v.gt(0))

    def after_warmup(self, e: float) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, e)


@attrs.frozen(kw_only=True)
class FixMatchCosine(_Horizon):
    """FixMatch's cosine decay (Sohn et al. 2020): ``factor = cos(7πk / (16K))`` at 0-based
    step ``k = step − 1`` of ``K = steps_per_epoch · epochs`` steps, so the lr ends at
    ``cos(7π/16) ≈ 0.195`` of its base, not 0 (SPICE stage 3).
    """

    def factor(self, step: int) -> float:
        total = self.steps_per_epoch * self.epochs
        return math.cos(7 * math.pi * (step - 1) / (16 * total))
