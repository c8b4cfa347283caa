"""Probes that train a few real steps of a stage before it trains: the numerics trials
(``corekit.engine.numerics``) and the time budget's plan (``corekit.budget``).

A stage is composed once for all of its probes (:class:`StageProbe`); each candidate trains on
a copy of that composition, so every candidate starts from the same weights, state and
optimizer, and nothing a probe does reaches the stage that then trains.
"""

from __future__ import annotations

import copy
import itertools
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path

import attrs
import torch

from corekit import checkpoint_io as checkpoint
from corekit import recipe as rc
from corekit.budget import Plan, periodic_seconds, plan
from corekit.composer import Composed, compose
from corekit.engine.devices import resolve_precision
from corekit.engine.numerics import Decision, DecisionCache, Numerics, Outcome, Trial, decide
from corekit.engine.probe_rounds import FAILURES, Cap, failure, interleave
from corekit.engine.seed import seed_everything
from corekit.engine.steps import stage_steps
from corekit.engine.trainer import StageTrainer, StreamBatch
from corekit.errors import NonFiniteLoss
from corekit.handoff import StageOutputs
from corekit.plugins import Plugins
from corekit.runner.data_cache import Datasets

BUDGET_STEPS = 5  # timed steps of the budget probe, after one warm-up step
PROBE_PIXELS = 4 * 32 * 32  # a numerics probe step trains this many pixels a view ...
PROBE_BATCH = (2, 16)  # ... in at least 2 and at most 16 images (the stage's batch if smaller)
PROBE_BATCHES = 4  # batches a numerics candidate cycles over (the first one's loss compared)

Batch = dict[str, StreamBatch]


@attrs.define
class StageProbe:
    """``stage`` composed once, from its seed, in full precision, contiguous and eager, and
    started (``on_stage_start``: e.g. neighbours mined, a bank encoded), for every probe of it:
    ``copy(numerics)`` is a fresh copy in other numerics, and ``trainer`` a trainer of such a
    copy that writes into a temporary folder. ``budget_seconds`` is the stage's share of a
    time budget, where it has one: the numerics probe's cap is a share of it, else of the
    stage's steps at the pace of its first candidate (``corekit.engine.probe_rounds.Cap``)."""

    plugins: Plugins
    stage: rc.Stage
    datasets: Datasets
    device: torch.device
    previous: StageOutputs | None = None
    earlier: dict[str, StageOutputs] = attrs.field(factory=dict)
    budget_seconds: float | None = None

    @cached_property
    def composed(self) -> Composed:
        """The composition every probe copies (built and started on first use)."""
        seed_everything(self.stage.train.seed)
        composed = compose(self.plugins, Numerics().apply(self.stage), self.datasets,
                           self.device, self.previous, stage_steps(self.stage, self.datasets),
                           self.earlier)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = StageTrainer(composed, Path(tmp), self.device, None, 0, lambda _: None,
                                   False)
            trainer.hooks.fire("on_stage_start", trainer.context(0))
        return composed

    @property
    def probe_batch(self) -> int:
        """The batch of a numerics probe step: ``PROBE_PIXELS`` of the stage's views (4 images
        at 32 px, 2 at 45 px and above), within ``PROBE_BATCH``, or the stage's batch where
        smaller or where its steps are split into streams (left as they are)."""
        train = self.stage.train
        if train.streams:
            return train.batch_size
        size = self.stage.augment.size or self.datasets(self.stage.data.trained_on()).size
        height, width = size if isinstance(size, tuple) else (size, size)
        low, high = PROBE_BATCH
        return min(train.batch_size, max(low, min(high, PROBE_PIXELS // (height * width))))

    def copy(self, numerics: Numerics, batch_size: int | None = None) -> Composed:
        """A copy of :attr:`composed` (the data sets shared, not copied) in ``numerics``,
        training batches of ``batch_size`` (default the stage's)."""
        base = self.composed
        shared = [s for s in (base.train_set, base.eval_set, base.reference) if s is not None]
        clone = copy.deepcopy(base, {id(s): s for s in shared})
        numerics.prepare(clone.model.online)
        stage = numerics.apply(clone.stage)
        if batch_size is not None:
            stage = attrs.evolve(stage, train=attrs.evolve(stage.train, batch_size=batch_size))
        return attrs.evolve(clone, stage=stage)

    def trainer(self, composed: Composed, folder: Path) -> StageTrainer:
        """A silent trainer of ``composed`` writing into ``folder``."""
        dtype = resolve_precision(composed.stage.train.precision, self.device)
        return StageTrainer(composed, folder, self.device, dtype, 0, lambda _: None, False)

    def contender(self, numerics: Numerics, batches: int = PROBE_BATCHES) -> StageContender:
        """``numerics`` on a copy of the stage at the probe batch, over its first ``batches``
        batches (then again from the first)."""
        return StageContender(self, numerics, self.probe_batch, batches)

    def check(self, numerics: Numerics) -> Trial:
        """``numerics`` trained on one batch (is an explicit ``compile = true`` usable?)."""
        contender = self.contender(numerics, 1)
        return guarded(numerics, lambda: Trial(numerics, contender.start()), contender)

    def rounds(self, options: Sequence[Numerics]) -> Outcome:
        """``options`` timed against each other in rounds, within the probe's cap
        (``corekit.engine.probe_rounds.interleave``); the stage's composition counts against
        the cap."""
        train = self.stage.train
        cap = Cap(stage_steps(self.stage, self.datasets) * train.epochs, self.budget_seconds,
                  train.batch_size / self.probe_batch)
        opened: list[StageContender] = []

        def open_(numerics: Numerics) -> StageContender:
            opened.append(self.contender(numerics))
            return opened[-1]

        t0 = time.perf_counter()
        _ = self.composed
        try:
            return interleave(options, open_, cap, spent=time.perf_counter() - t0)
        finally:
            for contender in opened:
                contender.close()

    def trial(self, numerics: Numerics, steps: int = 3) -> Trial:
        """``numerics`` alone on a copy of the stage at its own batch: the loss of the first
        batch, then the seconds per step of ``steps`` more (for benches)."""
        contender = StageContender(self, numerics, self.stage.train.batch_size, steps + 1)

        def run() -> Trial:
            first_loss = contender.start()
            t0 = time.perf_counter()
            losses = [contender.step() for _ in range(steps)]
            seconds = (time.perf_counter() - t0) / steps
            return Trial.timed(numerics, first_loss, [seconds],
                               all(map(math.isfinite, [first_loss, *losses])))

        return guarded(numerics, run, contender)

    def numerics(self, cache: DecisionCache | None = None) -> Decision:
        """The numerics the stage trains with (``corekit.engine.numerics.decide``)."""
        data = self.datasets(self.stage.data.trained_on())
        size = data.size if isinstance(data.size, tuple) else (data.size, data.size)
        return decide(self.stage, self.device, (data.channels, *size), self, cache)

    def budget(self, numerics: Numerics, seconds: float, steps: int = BUDGET_STEPS) -> Plan:
        """Time ``steps`` real steps (after one warm-up), one E-step, one evaluation and one
        checkpoint of the stage in ``numerics``, and plan the epochs that fit ``seconds``."""
        stage = self.stage
        with tempfile.TemporaryDirectory() as tmp:
            composed = self.copy(numerics)
            trainer = self.trainer(composed, Path(tmp))
            estep = 0.0
            if stage.clusterer is not None:
                t0 = time.perf_counter()
                trainer.e_step(0)
                estep = (time.perf_counter() - t0) * \
                    (1 / stage.clusterer.every if stage.clusterer.every else 0)
            generator = torch.Generator().manual_seed(0)
            batches = first_batches(trainer, steps + 1)
            trainer.train_batch(next(batches), 0, generator)
            per_step, _ = timed_steps(trainer, batches, generator, steps)
            evaluation, saving = timed_finish(trainer)
        periodic = estep + periodic_seconds(stage.train, evaluation, saving)
        return plan(seconds, per_step, periodic, stage_steps(stage, self.datasets),
                    stage.train.epochs, evaluation, saving)


@attrs.define
class StageContender:
    """One numerics candidate on a copy of ``probe``'s stage, training batches of
    ``batch_size`` over the stage's first ``count`` batches (generator seed 0, the same for
    every candidate), preloaded so that loading is not timed; the first is trained from the
    stage's seed, so that every candidate's first loss is of the same views."""

    probe: StageProbe
    numerics: Numerics
    batch_size: int
    count: int
    _folder: tempfile.TemporaryDirectory | None = None
    _trainer: StageTrainer | None = None
    _batches: list[Batch] = attrs.field(factory=list)
    _next: int = 0
    _generator: torch.Generator = attrs.field(factory=lambda: torch.Generator().manual_seed(0))

    def start(self) -> float:
        """Copy the stage in these numerics, preload its batches, train the first: its loss."""
        self._folder = tempfile.TemporaryDirectory()
        self._trainer = self.probe.trainer(self.probe.copy(self.numerics, self.batch_size),
                                           Path(self._folder.name))
        self._batches = list(first_batches(self._trainer, self.count))
        seed_everything(self.probe.stage.train.seed)  # the same views for every candidate
        return self.step()

    def step(self) -> float:
        """Train the next preloaded batch (cycling): its loss."""
        assert self._trainer is not None
        batch = self._batches[self._next % len(self._batches)]
        self._next += 1
        return float(self._trainer.train_batch(batch, 0, self._generator)["loss"])

    def close(self) -> None:
        """Drop the copy and its temporary folder."""
        if self._folder is not None:
            self._folder.cleanup()
        self._trainer, self._batches = None, []


def guarded(numerics: Numerics, run: Callable[[], Trial], contender: StageContender) -> Trial:
    """``run()``, then ``contender`` closed; a non-finite loss or a failure of the candidate
    (``corekit.engine.probe_rounds.FAILURES``) is a trial that says so, not an error."""
    try:
        return run()
    except NonFiniteLoss:
        return Trial(numerics, finite=False)
    except FAILURES as exc:
        return Trial(numerics, error=failure(exc))
    finally:
        contender.close()


def timed_finish(trainer: StageTrainer) -> tuple[float, float]:
    """The seconds of one evaluation of ``trainer``'s stage and of writing its checkpoint
    (into the trainer's folder), as after its last epoch."""
    t0 = time.perf_counter()
    trainer.evaluate()
    t1 = time.perf_counter()
    checkpoint.save_atomic(trainer.state_dict(0), trainer.checkpoint_path)
    return t1 - t0, time.perf_counter() - t1


def first_batches(trainer: StageTrainer, count: int) -> Iterator[Batch]:
    """The first ``count`` batches of the stage's order (every stream's) from generator seed 0,
    loaded one at a time."""
    return trainer.epoch_batches(torch.Generator().manual_seed(0), count)


def timed_steps(trainer: StageTrainer, batches: Iterator[Batch], generator: torch.Generator,
                steps: int) -> tuple[float, list[float]]:
    """Seconds per step and each step's total loss over (at most) ``steps`` steps of
    ``batches``."""
    losses: list[float] = []
    t0 = time.perf_counter()
    for batch in itertools.islice(batches, steps):
        losses.append(float(trainer.train_batch(batch, 0, generator)["loss"]))
    return (time.perf_counter() - t0) / max(len(losses), 1), losses
