"""Probes that train a few real steps of a stage on a throwaway copy before it trains: the
time budget's plan (``corekit.budget``) and the numerics trials (``corekit.engine.numerics``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from corekit import recipe as rc
from corekit.budget import Plan, plan
from corekit.composer import Composed, compose
from corekit.data import ImageSet
from corekit.engine.devices import resolve_precision
from corekit.engine.numerics import Decision, DecisionCache, Numerics, Trial, decide
from corekit.engine.trainer import StageTrainer, steps_per_epoch
from corekit.errors import NonFiniteLoss
from corekit.handoff import StageOutputs
from corekit.plugins import Plugins

Datasets = Callable[[str], ImageSet]
TRIAL_STEPS = 3  # timed steps per numerics candidate, after the first (warm-up) batch
MIN_TRIAL_SECONDS = 1.0  # fast steps are timed until this much time has passed ...
MAX_TRIAL_STEPS = 30  # ... or this many steps


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stage_steps(stage: rc.Stage, datasets: Datasets) -> int:
    """Steps per epoch of ``stage`` on the set it trains on."""
    train_set = datasets(stage.data.trained_on())
    return steps_per_epoch(len(train_set), stage.train.batch_size, stage.train.drop_last,
                           stage.train.steps_per_epoch)


@contextlib.contextmanager
def throwaway(plugins: Plugins, stage: rc.Stage, datasets: Datasets, device: torch.device,
              previous: StageOutputs | None,
              earlier: dict[str, StageOutputs]) -> Iterator[tuple[Composed, StageTrainer]]:
    """``stage`` composed afresh from its seed and a trainer writing into a temporary folder;
    nothing of it outlives the ``with`` block."""
    seed_everything(stage.train.seed)
    composed = compose(plugins, stage, datasets, device, previous, stage_steps(stage, datasets),
                       earlier)
    with tempfile.TemporaryDirectory() as tmp:
        yield composed, StageTrainer(composed, Path(tmp), device,
                                     resolve_precision(stage.train.precision, device), 0,
                                     lambda _: None, False)


Batch = tuple[torch.Tensor, torch.Tensor]


def _batches(composed: Composed, trainer: StageTrainer, count: int) -> Iterator[Batch]:
    """The first ``count`` batches of the sampler's order from generator seed 0, loaded one
    at a time."""
    generator = torch.Generator().manual_seed(0)
    order = composed.sampler.order(len(composed.train_set), count * trainer.batch_size,
                                   generator, composed.state)
    return itertools.islice(composed.train_set.batches(order, trainer.batch_size), count)


def _timed_steps(trainer: StageTrainer, batches: Iterator[Batch], generator: torch.Generator,
                 steps: int, min_seconds: float = 0.0) -> tuple[float, list[float]]:
    """Seconds per step and each step's total loss over ``steps`` steps, and more while they
    took under ``min_seconds`` and ``batches`` last (fast steps are timed over enough of
    them for the clock to resolve them)."""
    losses: list[float] = []
    t0 = time.perf_counter()
    for indices, images in batches:
        losses.append(float(trainer.train_step(indices, images, 0, generator)["loss"]))
        if len(losses) >= steps and time.perf_counter() - t0 >= min_seconds:
            break
    return (time.perf_counter() - t0) / max(len(losses), 1), losses


def probe_budget(plugins: Plugins, stage: rc.Stage, datasets: Datasets, device: torch.device,
                 previous: StageOutputs | None, earlier: dict[str, StageOutputs], budget: float,
                 steps: int = 5) -> Plan:
    """Time ``steps`` real steps (after one warm-up) and one E-step of ``stage`` on a throwaway
    copy, and plan the epochs that fit ``budget`` seconds."""
    with throwaway(plugins, stage, datasets, device, previous, earlier) as (composed, trainer):
        estep = 0.0
        clus = stage.clusterer
        if clus is not None:
            t0 = time.perf_counter()
            trainer.e_step(0)
            runs = (1 / clus.every if clus.every else 0) + \
                (1 / stage.train.eval_every if stage.train.eval_every else 0)
            estep = (time.perf_counter() - t0) * runs
        generator = torch.Generator().manual_seed(0)
        batches = _batches(composed, trainer, steps + 1)
        trainer.train_step(*next(batches), 0, generator)
        per_step, _ = _timed_steps(trainer, batches, generator, steps)
    return plan(budget, per_step, estep, stage_steps(stage, datasets), stage.train.epochs)


def trial_numerics(plugins: Plugins, stage: rc.Stage, datasets: Datasets, device: torch.device,
                   previous: StageOutputs | None, earlier: dict[str, StageOutputs],
                   numerics: Numerics, steps: int = TRIAL_STEPS) -> Trial:
    """``numerics`` on a throwaway copy of ``stage``: the loss of the first batch (the same
    images and views for every candidate), then the seconds per step of ``steps`` more (more
    while they take under ``MIN_TRIAL_SECONDS``, at most ``MAX_TRIAL_STEPS``).
    A candidate that raises (a ``torch.compile`` backend failing, an unsupported dtype) is a
    failed trial, not an error; a mistake of the recipe's own still is."""
    candidate = numerics.apply(stage)
    try:
        with throwaway(plugins, candidate, datasets, device, previous, earlier) as (
                composed, trainer):
            batches = _batches(composed, trainer, 1 + MAX_TRIAL_STEPS)
            generator = torch.Generator().manual_seed(0)
            _, (first_loss,) = _timed_steps(trainer, batches, generator, 1)
            per_step, losses = _timed_steps(trainer, batches, generator, steps,
                                            MIN_TRIAL_SECONDS)
    except NonFiniteLoss:
        return Trial(numerics, finite=False)
    except (RuntimeError, TypeError, ValueError, AssertionError, OSError) as exc:
        return Trial(numerics, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return Trial(numerics, first_loss, per_step, all(map(math.isfinite, [first_loss, *losses])))


def choose_numerics(plugins: Plugins, stage: rc.Stage, datasets: Datasets, device: torch.device,
                    previous: StageOutputs | None, earlier: dict[str, StageOutputs],
                    cache: DecisionCache | None = None) -> Decision:
    """The numerics ``stage`` trains with (``corekit.engine.numerics.decide``), each
    candidate tried by :func:`trial_numerics`."""
    def measure(numerics: Numerics, steps: int = TRIAL_STEPS) -> Trial:
        return trial_numerics(plugins, stage, datasets, device, previous, earlier, numerics,
                              steps)

    data = datasets(stage.data.trained_on())
    size = data.size if isinstance(data.size, tuple) else (data.size, data.size)
    return decide(stage, device, (data.channels, *size), measure, cache)
