"""A time budget for a run: ``--budget 10m`` / ``train.budget = "10m"``.

Before a stage trains, a probe times a few real steps and one E-step of the composed stage;
the number of epochs that fits the budget follows (never more than the recipe's), and every
option counted in epochs is scaled with it, so a cosine schedule ends on time: the schedule's
``warmup_epochs``, ``cosine_epochs`` and ``milestones``, each loss's ``start_epoch`` and any
head option called ``start_epoch`` (ProPos's noise gate). During training the stage stops
after the last epoch that fits, with its final E-step, evaluation and checkpoint.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from corekit import recipe as rc
from corekit.recipe.durations import parse_budget as parse_budget  # callers read it here too

SAFETY = 0.9  # of the budget planned for training; the rest covers evaluation and saving
EPOCH_OPTIONS = ("warmup_epochs", "cosine_epochs")


@attrs.frozen
class Plan:
    """What a stage's budget allows: the probe's timings and the epochs that fit."""

    budget: float
    seconds_per_step: float
    seconds_per_estep: float
    steps_per_epoch: int
    epochs: int
    recipe_epochs: int

    @property
    def seconds_per_epoch(self) -> float:
        return self.steps_per_epoch * self.seconds_per_step + self.seconds_per_estep

    def describe(self) -> str:
        scaled = (f", epoch options scaled from {self.recipe_epochs} epochs"
                  if self.epochs != self.recipe_epochs else "")
        return (f"budget {format_seconds(self.budget)}: {self.seconds_per_step:.3f} s/step x "
                f"{self.steps_per_epoch} steps + {self.seconds_per_estep:.1f} s E-step per "
                f"epoch -> {self.epochs} epoch(s){scaled}")


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def plan(budget: float, seconds_per_step: float, seconds_per_estep: float,
         steps_per_epoch: int, recipe_epochs: int) -> Plan:
    """The epochs (at least 1, at most the recipe's) whose steps and E-steps fit ``SAFETY`` of
    ``budget``."""
    per_epoch = steps_per_epoch * seconds_per_step + seconds_per_estep
    fit = int(SAFETY * budget // max(per_epoch, 1e-9))
    return Plan(budget, seconds_per_step, seconds_per_estep, steps_per_epoch,
                max(1, min(recipe_epochs, fit)), recipe_epochs)


def _scaled(value: Any, factor: float, whole: bool) -> Any:
    """``value × factor`` (element-wise for lists), rounded when ``whole`` (an epoch index)."""
    if isinstance(value, list):
        return [_scaled(v, factor, whole) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return int(round(value * factor)) if whole else float(value) * factor


def scale_stage(stage: rc.Stage, epochs: int) -> rc.Stage:
    """A copy of ``stage`` with ``epochs`` epochs and every epoch-counted option scaled by
    ``epochs / stage.train.epochs``."""
    factor = epochs / max(stage.train.epochs, 1)
    schedule = stage.train.schedule
    options = {k: (_scaled(v, factor, False) if k in (*EPOCH_OPTIONS, "milestones") else v)
               for k, v in schedule.options.items()}
    losses = {n: attrs.evolve(loss, start_epoch=int(round(loss.start_epoch * factor)))
              for n, loss in stage.losses.items()}
    heads = {n: attrs.evolve(h, options={k: (_scaled(v, factor, True) if k == "start_epoch"
                                             else v)
                                         for k, v in h.options.items()})
             for n, h in stage.model.heads.items()}
    train = attrs.evolve(stage.train, epochs=epochs,
                         schedule=attrs.evolve(schedule, options=options))
    return attrs.evolve(stage, train=train, losses=losses,
                        model=attrs.evolve(stage.model, heads=heads))


@attrs.define
class Deadline:
    """Wall-clock end of a stage; ``fits(seconds)`` says whether that much more work does."""

    end: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @property
    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def fits(self, seconds: float) -> bool:
        return seconds <= self.left
