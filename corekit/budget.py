"""A time budget for a run: ``--budget 10m`` / ``train.budget = "10m"``.

Before a stage trains, a probe times a few real steps and one E-step of the composed stage;
the number of epochs that fits the budget follows (never more than the recipe's), and every
option counted in epochs is scaled with it, so a cosine schedule ends on time: the schedule's
``warmup_epochs``, ``cosine_epochs`` and ``milestones``, each loss's ``start_epoch`` and any
head option called ``start_epoch`` (ProPos's noise gate).

During training a ``Pacer`` keeps the stage on time. After the first real epoch, and again
whenever the measured pace (seconds per epoch, the mean of the last ``PACE_WINDOW``) moves by
more than ``DRIFT`` from the pace of the last fit, it re-fits the number of epochs to the time
left, and compresses (or stretches) the rest of the schedule over them: a ``Warp`` maps each
real epoch to the position on the planned schedule, so the learning-rate schedule, each loss's
``start_epoch`` and every epoch-counted head option still run to their end. Each re-fit is kept
(``Refit``) in the stage's ``plan.json`` and ``final.json``. Only when an epoch at the measured
pace would end past ``LIMIT`` of the budget does the stage stop early.

``--budget`` with ``--seeds N`` is per seed: each seed is a run of its own with the whole
budget, so N seeds take up to N times it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import attrs

from corekit import recipe as rc
from corekit.recipe.durations import parse_budget as parse_budget  # callers read it here too

SAFETY = 0.9  # of the budget planned for training by the probe, before any epoch ran
TARGET = 0.98  # of the budget: where a re-fitted run aims to end, evaluation and report included
LIMIT = 1.03  # of the budget: no epoch is started that would end training past it
DRIFT = 0.2  # a re-fit when the measured pace moves more than this from the fitted one
PACE_WINDOW = 3  # epochs whose mean time is the measured pace
MAX_SLOWDOWN = 3.0  # the most a slower pace is taken to slow the run's tail
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
    estep_once: float = 0.0
    """Seconds of one E-step (``seconds_per_estep`` spreads them over the epochs)."""

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
         steps_per_epoch: int, recipe_epochs: int, estep_once: float = 0.0) -> Plan:
    """The epochs (at least 1, at most the recipe's) whose steps and E-steps fit ``SAFETY`` of
    ``budget``; ``estep_once``: the seconds of one E-step, kept for the final evaluation."""
    per_epoch = steps_per_epoch * seconds_per_step + seconds_per_estep
    fit = int(SAFETY * budget // max(per_epoch, 1e-9))
    return Plan(budget, seconds_per_step, seconds_per_estep, steps_per_epoch,
                max(1, min(recipe_epochs, fit)), recipe_epochs, estep_once)


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


@attrs.frozen
class Refit:
    """One re-fit of a budgeted stage: once ``epoch`` epochs had run, at a measured pace of
    ``seconds_per_epoch``, the stage was given ``epochs`` epochs in all (``why``: the first
    epoch, the pace's drift, or out of time)."""

    epoch: int
    seconds_per_epoch: float
    epochs: int
    why: str

    def describe(self) -> str:
        return (f"re-fit after epoch {self.epoch} ({self.why}): {self.seconds_per_epoch:.2f} "
                f"s/epoch -> {self.epochs} epoch(s)")


@attrs.frozen
class Warp:
    """Where the planned schedule stands at each real (fractional) epoch: piecewise linear
    through ``knots`` ``(real epoch, schedule epoch, schedule epochs per real epoch)``; the
    identity without knots."""

    knots: tuple[tuple[float, float, float], ...] = ()

    def at(self, real: float) -> float:
        """The schedule's fractional epoch at real fractional epoch ``real``."""
        for start, position, rate in reversed(self.knots):
            if real >= start:
                return position + (real - start) * rate
        return real

    def epoch(self, real: int) -> int:
        """The schedule's (0-based) epoch while real epoch ``real`` runs."""
        return math.floor(self.at(real) + 1e-9) if self.knots else real

    def step(self, real: int, steps_per_epoch: int) -> int:
        """The schedule's (1-based) global step at real global step ``real``."""
        if not self.knots:
            return real
        return max(1, round(self.at(real / steps_per_epoch) * steps_per_epoch))

    def compressed(self, real: int, real_end: int, schedule_end: int) -> Warp:
        """This warp up to real epoch ``real``; from there the rest of the schedule (to its
        epoch ``schedule_end``) laid over the real epochs up to ``real_end``."""
        position = self.at(real)
        rate = (schedule_end - position) / max(real_end - real, 1)
        return Warp((*self.knots, (float(real), position, rate)))


def fitting(left: float, limit: float, pace: float) -> int:
    """Epochs of ``pace`` seconds that end nearest to ``left`` seconds from now without
    passing ``limit`` seconds."""
    pace = max(pace, 1e-9)
    nearest = round(left / pace)
    return nearest if nearest * pace <= limit else max(0, math.floor(limit / pace))


@attrs.define
class Pacer:
    """Keeps a budgeted stage on time (see the module's docstring): training aims to end at
    ``deadline`` and never starts an epoch that ends past ``limit``; ``planned`` is the
    number of epochs the stage's schedule is laid out for, ``most`` the recipe's. ``tail``
    is the time the deadlines keep for what follows training at the probe's pace
    ``expected`` (seconds per epoch); a slower measured pace (a busier machine) slows the
    tail as much, and that much more is kept (at most ``MAX_SLOWDOWN`` times)."""

    deadline: Deadline
    limit: Deadline
    planned: int
    most: int
    tail: float = 0.0
    expected: float = 0.0
    epochs: int = attrs.field()
    warp: Warp = attrs.field(factory=Warp)
    refits: list[Refit] = attrs.field(factory=list)
    times: list[float] = attrs.field(factory=list)
    pace: float | None = None

    @epochs.default
    def _planned(self) -> int:
        return self.planned

    @classmethod
    def after(cls, target: float, limit: float, planned: int, most: int, tail: float = 0.0,
              expected: float = 0.0) -> Pacer:
        """A pacer whose deadline is ``target`` seconds from now and its limit ``limit``."""
        return cls(Deadline.after(target), Deadline.after(limit), planned, max(most, planned),
                   tail, expected)

    def slower_tail(self, pace: float) -> float:
        """The extra seconds the tail takes at ``pace`` rather than the probe's."""
        if self.expected <= 0:
            return 0.0
        return self.tail * (min(MAX_SLOWDOWN, max(1.0, pace / self.expected)) - 1)

    def after_epoch(self, done: int, seconds: float) -> Refit | None:
        """Record that the ``done``-th epoch took ``seconds`` (with the evaluation and
        checkpoint before it); re-fit where it is the first or the pace drifted."""
        self.times.append(seconds)
        pace = sum(self.times[-PACE_WINDOW:]) / len(self.times[-PACE_WINDOW:])
        if self.pace is not None and abs(pace / self.pace - 1) <= DRIFT:
            return self._stop_if_late(done)
        why = "first epoch" if self.pace is None else f"pace {pace / self.pace - 1:+.0%}"
        self.pace = pace
        extra = self.slower_tail(pace)
        more = fitting(self.deadline.left - extra, self.limit.left - extra, pace)
        return self._refit(done, max(done, min(self.most, done + more)), why)

    def _stop_if_late(self, done: int) -> Refit | None:
        if done < self.epochs and self.pace is not None and \
                not self.limit.fits(self.pace + self.slower_tail(self.pace)):
            return self._refit(done, done, "out of time")
        return None

    def _refit(self, done: int, epochs: int, why: str) -> Refit:
        if epochs > done:
            self.warp = self.warp.compressed(done, epochs, self.planned)
        self.epochs = epochs
        refit = Refit(done, float(self.pace or 0.0), epochs, why)
        self.refits.append(refit)
        return refit
