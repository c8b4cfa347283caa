"""Probes that train a few real steps of a stage before it trains: the numerics trials
(``corekit.engine.numerics``) and the time budget's plan (``corekit.budget``).

A stage is composed once for all of its probes (:class:`StageProbe`); each candidate trains on
a copy of that composition, so every candidate starts from the same weights, state and
optimizer, and nothing a probe does reaches the stage that then trains.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import attrs
import torch

from corekit import checkpoint_io as checkpoint
from corekit import recipe as rc
from corekit.budget import Plan, periodic_seconds, plan
from corekit.composer import Composed, compose
from corekit.engine.devices import resolve_precision
from corekit.engine.numerics import Decision, DecisionCache, Numerics, Trial, decide
from corekit.engine.seed import seed_everything
from corekit.engine.steps import stage_steps
from corekit.engine.trainer import StageTrainer, StreamBatch
from corekit.errors import NonFiniteLoss
from corekit.handoff import StageOutputs
from corekit.plugins import Plugins
from corekit.runner.data_cache import Datasets

TRIAL_STEPS = 3  # timed steps per numerics candidate, after the first (warm-up) batch
MIN_TRIAL_SECONDS = 1.0  # fast steps are timed until this much time has passed ...
MAX_TRIAL_STEPS = 30  # ... or this many steps
BUDGET_STEPS = 5  # timed steps of the budget probe, after one warm-up step

Batch = dict[str, StreamBatch]


@attrs.define
class StageProbe:
    """``stage`` composed once, from its seed, in full precision, contiguous and eager, for
    every probe of it: ``copy(numerics)`` is a fresh copy in other numerics, and ``trainer``
    a trainer of such a copy that writes into a temporary folder."""

    plugins: Plugins
    stage: rc.Stage
    datasets: Datasets
    device: torch.device
    previous: StageOutputs | None = None
    earlier: dict[str, StageOutputs] = attrs.field(factory=dict)

    @cached_property
    def composed(self) -> Composed:
        """The composition every probe copies (built on first use)."""
        seed_everything(self.stage.train.seed)
        return compose(self.plugins, Numerics().apply(self.stage), self.datasets, self.device,
                       self.previous, stage_steps(self.stage, self.datasets), self.earlier)

    def copy(self, numerics: Numerics) -> Composed:
        """A copy of :attr:`composed` (the data sets shared, not copied) in ``numerics``."""
        base = self.composed
        shared = [s for s in (base.train_set, base.eval_set, base.reference) if s is not None]
        clone = copy.deepcopy(base, {id(s): s for s in shared})
        numerics.prepare(clone.model.online)
        return attrs.evolve(clone, stage=numerics.apply(clone.stage))

    def trainer(self, composed: Composed, folder: Path) -> StageTrainer:
        """A silent trainer of ``composed`` writing into ``folder``, with the stage started as
        training starts it (``on_stage_start``: e.g. neighbours mined, a bank encoded)."""
        dtype = resolve_precision(composed.stage.train.precision, self.device)
        trainer = StageTrainer(composed, folder, self.device, dtype, 0, lambda _: None, False)
        trainer.hooks.fire("on_stage_start", trainer.context(0))
        return trainer

    def trial(self, numerics: Numerics, steps: int = TRIAL_STEPS) -> Trial:
        """``numerics`` on a copy of the stage: the loss of the first batch (the same images
        and views for every candidate), then the seconds per step of ``steps`` more (more
        while they take under ``MIN_TRIAL_SECONDS``, at most ``MAX_TRIAL_STEPS``).
        A candidate that raises (a ``torch.compile`` backend failing, an unsupported dtype)
        is a failed trial, not an error; a mistake of the recipe's own still is."""
        try:
            with tempfile.TemporaryDirectory() as tmp:
                composed = self.copy(numerics)
                trainer = self.trainer(composed, Path(tmp))
                batches = first_batches(trainer, 1 + MAX_TRIAL_STEPS)
                generator = torch.Generator().manual_seed(0)
                _, (first_loss,) = timed_steps(trainer, batches, generator, 1)
                per_step, losses = timed_steps(trainer, batches, generator, steps,
                                               MIN_TRIAL_SECONDS)
        except NonFiniteLoss:
            return Trial(numerics, finite=False)
        except (RuntimeError, TypeError, ValueError, AssertionError, OSError) as exc:
            return Trial(numerics,
                         error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return Trial(numerics, first_loss, per_step,
                     all(map(math.isfinite, [first_loss, *losses])))

    def numerics(self, cache: DecisionCache | None = None) -> Decision:
        """The numerics the stage trains with (``corekit.engine.numerics.decide``), each
        candidate tried by :meth:`trial`."""
        data = self.datasets(self.stage.data.trained_on())
        size = data.size if isinstance(data.size, tuple) else (data.size, data.size)
        return decide(self.stage, self.device, (data.channels, *size), self.trial, cache)

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
                steps: int, min_seconds: float = 0.0) -> tuple[float, list[float]]:
    """Seconds per step and each step's total loss over ``steps`` steps, and more while they
    took under ``min_seconds`` and ``batches`` last (fast steps are timed over enough of
    them for the clock to resolve them)."""
    losses: list[float] = []
    t0 = time.perf_counter()
    for batch in batches:
        losses.append(float(trainer.train_batch(batch, 0, generator)["loss"]))
        if len(losses) >= steps and time.perf_counter() - t0 >= min_seconds:
            break
    return (time.perf_counter() - t0) / max(len(losses), 1), losses
