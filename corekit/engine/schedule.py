"""Learning-rate schedule: linear warm-up per step, then constant or cosine."""

from __future__ import annotations

import math

from corekit.recipe import Schedule


def lr_factor(schedule: Schedule, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The multiplier of the base lr at global step ``step`` (1-based).

    Warm-up: ``e/W`` for fractional epoch ``e = step/steps_per_epoch < W``; then cosine
    ``½(1 + cos(π (e − W)/C))`` with ``C = cosine_epochs`` (default ``epochs − W``; hadis.md §3
    and C10: ProPos divides by 1000, not 950).
    """
    e = step / max(steps_per_epoch, 1)
    warm = schedule.warmup_epochs
    if e < warm:
        return e / warm
    if schedule.type == "constant":
        return 1.0
    if schedule.type != "cosine":
        raise ValueError(f"unknown schedule {schedule.type!r}; use 'constant' or 'cosine'")
    span = schedule.cosine_epochs or max(epochs - warm, 1e-9)
    return 0.5 * (1 + math.cos(math.pi * min(e - warm, span) / span))
