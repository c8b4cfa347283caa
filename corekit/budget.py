"""A time budget for a run: ``--budget 10m`` / ``train.budget = "10m"``.

Before a stage trains, a probe times a few real steps, one E-step, one evaluation and one
checkpoint of the composed stage; the number of epochs that fits the budget follows (never
more than the recipe's), and every option counted in epochs is scaled with it, so a cosine
schedule ends on time: the schedule's ``warmup_epochs``, ``cosine_epochs`` and
``milestones``, each loss's ``start_epoch`` and any head option called ``start_epoch``
(ProPos's noise gate).

During training a ``Pacer`` keeps the stage on time. After the first real epoch, and again
whenever the measured pace (seconds per epoch: the mean over a window of whole periods of the
stage's evaluations, checkpoints and E-steps, ``pace_window``) moves by more than ``DRIFT``
from the pace of the last fit, it re-fits the number of epochs to the time left, and
compresses (or stretches) the rest of the schedule over them: a ``Warp`` maps each real epoch
to the position on the planned schedule, so the learning-rate schedule, each loss's
``start_epoch`` and every epoch-counted head option still run to their end, and so does what
counts steps: the trainer gives the step on the planned schedule as ``Step.global_step`` (the
EMA's momentum schedule). Each re-fit is kept (``Refit``) in the stage's ``plan.json`` as it
is taken, and in its ``final.json``; ``--resume`` takes again those taken up to its
checkpoint. Only when an epoch at the measured pace would end past ``LIMIT`` of the budget
does the stage stop early.

The time kept after training for what ends the run is not a share of the budget: the last
evaluation and checkpoint take what the probe timed them at, the outputs and the report a few
seconds (``corekit.runner.plan.AFTER_TRAINING_SECONDS``), and a slower measured pace than the
probe's slows that tail as much.

``--budget`` with ``--seeds N`` is per seed: each seed is a run of its own with the whole
budget, so N seeds take up to N times it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from corekit import distributed
from corekit import recipe as rc
from corekit.recipe.durations import parse_budget as parse_budget  # callers read it here too

SAFETY = 0.9  # of the budget planned for training by the probe, before any epoch ran
TARGET = 0.98  # of the budget: where a re-fitted run aims to end, evaluation and report included
LIMIT = 1.03  # of the budget: no epoch is started that would end training past it
DRIFT = 0.2  # a re-fit when the measured pace moves more than this from the fitted one
PACE_WINDOW = 3  # the fewest epochs whose mean time is the measured pace
MAX_SLOWDOWN = 3.0  # the most a slower pace is taken to slow the run's tail
EPOCH_OPTIONS = ("warmup_epochs", "cosine_epochs")


@attrs.frozen
class Plan:
    """What a stage's budget allows: the probe's timings and the epochs that fit."""

    budget: float
    seconds_per_step: float
    seconds_per_estep: float
    """Seconds per epoch of the stage's E-steps, evaluations and checkpoints."""
    steps_per_epoch: int
    epochs: int
    recipe_epochs: int
    seconds_per_eval: float = 0.0
    """Seconds of one evaluation of the stage (its assignments and metrics)."""
    seconds_per_checkpoint: float = 0.0
    """Seconds of writing one checkpoint of the stage."""

    @property
    def seconds_per_epoch(self) -> float:
        return self.steps_per_epoch * self.seconds_per_step + self.seconds_per_estep

    @property
    def finish_seconds(self) -> float:
        """Seconds of what ends the last epoch: an evaluation and a checkpoint."""
        return self.seconds_per_eval + self.seconds_per_checkpoint

    def describe(self) -> str:
        scaled = (f", epoch options scaled from {self.recipe_epochs} epochs"
                  if self.epochs != self.recipe_epochs else "")
        return (f"budget {format_seconds(self.budget)}: {self.seconds_per_step:.3f} s/step x "
                f"{self.steps_per_epoch} steps + {self.seconds_per_estep:.2f} s of E-steps, "
                f"evaluations and checkpoints per epoch -> {self.epochs} epoch(s){scaled}")


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def plan(budget: float, seconds_per_step: float, seconds_per_estep: float,
         steps_per_epoch: int, recipe_epochs: int, seconds_per_eval: float = 0.0,
         seconds_per_checkpoint: float = 0.0) -> Plan:
    """The epochs (at least 1, at most the recipe's) whose steps and E-steps fit ``SAFETY`` of
    ``budget``; the seconds of one evaluation and one checkpoint are kept with the plan."""
    per_epoch = steps_per_epoch * seconds_per_step + seconds_per_estep
    fit = int(SAFETY * budget // max(per_epoch, 1e-9))
    return Plan(budget, seconds_per_step, seconds_per_estep, steps_per_epoch,
                max(1, min(recipe_epochs, fit)), recipe_epochs, seconds_per_eval,
                seconds_per_checkpoint)


def pace_window(stage: rc.Stage) -> int:
    """The epochs whose mean time is a budgeted stage's measured pace: at least
    ``PACE_WINDOW``, and a whole period of its evaluations, checkpoints and E-steps, so each
    mean holds its share of them (not one evaluation in three epochs, then none)."""
    train, clusterer = stage.train, stage.clusterer
    every = clusterer.every if clusterer is not None else 0
    return max(PACE_WINDOW, train.eval_every, train.checkpoint_every, every)


def periodic_seconds(train: rc.Train, seconds_per_eval: float,
                     seconds_per_checkpoint: float) -> float:
    """Seconds per epoch of the evaluations and checkpoints a stage makes while it trains
    (every ``train.eval_every`` and ``train.checkpoint_every`` epochs), each taking the
    seconds given."""
    evals = seconds_per_eval / train.eval_every if train.eval_every else 0.0
    saves = seconds_per_checkpoint / train.checkpoint_every if train.checkpoint_every else 0.0
    return evals + saves


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
    tail as much, and that much more is kept (at most ``MAX_SLOWDOWN`` times).

    The measured pace is the mean time of the last ``window`` epochs (``pace_window``); until
    more than that many ran, none of the stage's periodic evaluations and checkpoints is in
    it yet, so it counts their share at the probe's timings, ``periodic`` seconds per epoch.
    ``on_refit`` is told of each re-fit as it is taken (the stage records it)."""

    deadline: Deadline
    limit: Deadline
    planned: int
    most: int
    tail: float = 0.0
    expected: float = 0.0
    window: int = PACE_WINDOW
    periodic: float = 0.0
    epochs: int = attrs.field()
    warp: Warp = attrs.field(factory=Warp)
    refits: list[Refit] = attrs.field(factory=list)
    times: list[float] = attrs.field(factory=list)
    pace: float | None = None
    on_refit: Callable[[Refit], None] | None = None

    @epochs.default
    def _planned(self) -> int:
        return self.planned

    @classmethod
    def after(cls, target: float, limit: float, planned: int, most: int, *, tail: float = 0.0,
              expected: float = 0.0, window: int = PACE_WINDOW,
              periodic: float = 0.0) -> Pacer:
        """A pacer whose deadline is ``target`` seconds from now and its limit ``limit``."""
        return cls(Deadline.after(target), Deadline.after(limit), planned, max(most, planned),
                   tail, expected, window, periodic)

    def slower_tail(self, pace: float) -> float:
        """The extra seconds the tail takes at ``pace`` rather than the probe's."""
        if self.expected <= 0:
            return 0.0
        return self.tail * (min(MAX_SLOWDOWN, max(1.0, pace / self.expected)) - 1)

    def measured(self) -> float:
        """Seconds per epoch: the mean of the last ``window`` epochs, with ``periodic`` while
        no more than that many ran."""
        recent = self.times[-self.window:]
        early = self.periodic if len(self.times) <= self.window else 0.0
        return sum(recent) / len(recent) + early

    def after_epoch(self, done: int, seconds: float) -> Refit | None:
        """Record that the ``done``-th epoch took ``seconds`` (with the evaluation and
        checkpoint before it); re-fit where it is the first or the pace drifted."""
        self.times.append(seconds)
        pace = self.measured()
        if self.pace is not None and abs(pace / self.pace - 1) <= DRIFT:
            return self._stop_if_late(done)
        why = "first epoch" if self.pace is None else f"pace {pace / self.pace - 1:+.0%}"
        extra = self.slower_tail(pace)
        more = fitting(self.deadline.left - extra, self.limit.left - extra, pace)
        return self.apply(Refit(done, pace, max(done, min(self.most, done + more)), why))

    def _stop_if_late(self, done: int) -> Refit | None:
        if done < self.epochs and self.pace is not None and \
                not self.limit.fits(self.pace + self.slower_tail(self.pace)):
            return self.apply(Refit(done, self.pace, done, "out of time"))
        return None

    def apply(self, refit: Refit) -> Refit:
        """Take ``refit``: ``refit.epochs`` epochs in all, the rest of the planned schedule
        laid over those after epoch ``refit.epoch`` (``Warp.compressed``), its pace the one
        drifts are measured from; ``on_refit`` is told."""
        if refit.epochs > refit.epoch:
            self.warp = self.warp.compressed(refit.epoch, refit.epochs, self.planned)
        self.epochs = refit.epochs
        self.pace = refit.seconds_per_epoch
        self.refits.append(refit)
        if self.on_refit is not None:
            self.on_refit(refit)
        return refit

    def replay(self, refits: Sequence[Refit]) -> None:
        """Take ``refits`` again, in order: those an interrupted run of the stage made."""
        for refit in refits:
            self.apply(refit)


def agreed_refit(pacer: Pacer, done: int, seconds: float) -> Refit | None:
    """``pacer.after_epoch(done, seconds)``; under torchrun rank 0's re-fit, taken by every
    rank (each rank's clock differs, and all must stop at the same epoch with the same
    compressed schedule)."""
    if not distributed.is_distributed():
        return pacer.after_epoch(done, seconds)
    refit = pacer.after_epoch(done, seconds) if distributed.is_main() else None
    refit = distributed.broadcast(refit)
    if refit is not None and not distributed.is_main():
        pacer.apply(refit)
    return refit
