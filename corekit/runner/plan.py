"""A stage's plan: the stage as the recipe states it plus every decision taken for it.

Decisions are taken once, before the stage trains, and kept as values: the number of clusters
and how it was found, the seed, the device, the numerics and their trial times, the epochs a
time budget allows and the probe's figures. The plan's ``stage`` is the recipe's stage with
those decisions applied (``attrs.evolve``); the recipe itself is never edited. Each stage
writes its plan to ``RUN/stages/NAME/plan.json``; ``deepclust show RUN`` prints it, and
``evaluate`` reads it back to rebuild the stage as it trained.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from corekit import recipe as rc
from corekit.budget import (
    LIMIT,
    TARGET,
    Pacer,
    Refit,
    format_seconds,
    pace_window,
    parse_budget,
    periodic_seconds,
    scale_stage,
)
from corekit.budget import Plan as BudgetProbe
from corekit.engine.numerics import Decision, DecisionCache, candidates
from corekit.errors import UserError
from corekit.estimate_k import KEstimate, estimate_k
from corekit.handoff import StageOutputs
from corekit.plugins import Plugins
from corekit.run_files import read_json
from corekit.runner.data_cache import DataCache, stage_datasets
from corekit.runner.probes import StageProbe

PLAN_FILE = "plan.json"


@attrs.frozen
class KChoice:
    """The stage's number of clusters and how it was found: stated by the recipe (``--k``),
    the class count of a labelled set, or estimated (``corekit.estimate_k``) for an
    unlabelled one."""

    k: int
    how: Literal["recipe", "labels", "estimate"]
    estimate: KEstimate | None = None

    def apply(self, stage: rc.Stage) -> rc.Stage:
        """``stage`` with an estimated K as its ``data.n_clusters`` (a stated or labelled K
        is already the stage's)."""
        if self.how != "estimate":
            return stage
        return attrs.evolve(stage, data=attrs.evolve(stage.data, n_clusters=self.k))

    def describe(self) -> str:
        if self.estimate is None:
            source = "data.n_clusters" if self.how == "recipe" else "the class count"
            return f"K = {self.k} ({source})"
        return (f"K = {self.k}, estimated by the silhouette of k-means on the pixels of "
                f"{self.estimate.n_images} images (no labels and no --k; k_estimate.json)")

    def to_json(self) -> dict[str, Any]:
        scores = self.estimate.scores if self.estimate else None
        return {"k": self.k, "how": self.how, "silhouette": scores,
                "n_images": self.estimate.n_images if self.estimate else None}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> KChoice:
        estimate = None
        if payload.get("silhouette") is not None:
            scores = {int(k): float(v) for k, v in payload["silhouette"].items()}
            estimate = KEstimate(int(payload["k"]), scores, int(payload["n_images"]))
        return cls(int(payload["k"]), payload["how"], estimate)


def decide_k(stage: rc.Stage, cache: DataCache) -> KChoice:
    """How many clusters ``stage`` makes: the recipe's ``data.n_clusters``, else the class
    count of the set it trains on, else an estimate from its pixels."""
    if stage.data.n_clusters:
        return KChoice(stage.data.n_clusters, "recipe")
    data = stage_datasets(cache, stage)(stage.data.trained_on())
    if data.num_classes:
        return KChoice(data.num_classes, "labels")
    estimate = estimate_k(data, stage.train.seed)
    return KChoice(estimate.k, "estimate", estimate)


AFTER_TRAINING_SECONDS = 2.0
"""Seconds kept after a budgeted stage's last evaluation and checkpoint, at the probe's pace:
its outputs, ``assignments.csv``, the pixel baseline and the report, most of it the report's
plots and embedding, whose work does not grow with the data set (on digits: about 1.1 s on a
nearly quiet core, 1.0-2.6 s on a core shared at a load of 3-5, ``bench/budget_accuracy.py``)."""


@attrs.frozen
class BudgetChoice:
    """What a time budget allows a stage: ``seconds`` of the run's budget left for it once
    its probe ran, and the probe's timings with the epochs that fit (``corekit.budget``)."""

    seconds: float
    probe: BudgetProbe

    @property
    def tail_seconds(self) -> float:
        """Seconds kept for what follows the last epoch: its evaluation and checkpoint, as
        the probe timed them, and ``AFTER_TRAINING_SECONDS``."""
        return self.probe.finish_seconds + AFTER_TRAINING_SECONDS

    @property
    def training_seconds(self) -> float:
        """Seconds the stage aims to train: up to ``TARGET`` of its share of the budget,
        less the tail."""
        return self.seconds - (1 - TARGET) * self.probe.budget - self.tail_seconds

    @property
    def margin_seconds(self) -> float:
        """Seconds between where training aims to end and the latest it may end."""
        return (LIMIT - TARGET) * self.probe.budget

    def pacer(self, stage: rc.Stage) -> Pacer:
        """The pacer of ``stage`` (the stage as planned), started now: training aims to end
        after ``training_seconds``, and no epoch ends past ``LIMIT`` of the budget
        (``corekit.budget.Pacer``)."""
        return self._pacer(stage, self.training_seconds)

    def resumed_pacer(self, stage: rc.Stage, refits: Sequence[Refit], done: int) -> Pacer:
        """The pacer of ``stage`` resumed after ``done`` epochs, with the ``refits`` an
        interrupted run of it made up to then taken again: the same epochs, compressed
        schedule and fitted pace. The epochs left get the time they take at that pace;
        without a re-fit to take, the stage is paced as a new one."""
        kept = [refit for refit in refits if refit.epoch <= done]
        if not kept:
            return self.pacer(stage)
        left = max(kept[-1].epochs - done, 0) * kept[-1].seconds_per_epoch
        pacer = self._pacer(stage, left)
        pacer.replay(kept)
        return pacer

    def _pacer(self, stage: rc.Stage, training: float) -> Pacer:
        """A pacer of ``stage`` aiming to end training ``training`` seconds from now."""
        return Pacer.after(training, training + self.margin_seconds, self.probe.epochs,
                           self.probe.recipe_epochs, tail=self.tail_seconds,
                           expected=self.probe.seconds_per_epoch, window=pace_window(stage),
                           periodic=periodic_seconds(stage.train, self.probe.seconds_per_eval,
                                                    self.probe.seconds_per_checkpoint))

    def describe(self) -> str:
        return f"{self.probe.describe()}; {format_seconds(self.seconds)} left for the stage"

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, **attrs.asdict(self.probe)}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> BudgetChoice:
        fields = {f.name for f in attrs.fields(BudgetProbe)}
        return cls(float(payload["seconds"]),
                   BudgetProbe(**{k: v for k, v in payload.items() if k in fields}))


@attrs.frozen
class StagePlan:
    """A stage and every decision taken for it. ``stage`` has the decisions applied: the
    estimated K, the chosen numerics, the epochs (and epoch-counted options) a budget
    allows; ``recipe_stage`` is the stage as the recipe states it."""

    index: int
    recipe_stage: rc.Stage
    device: torch.device
    k: KChoice
    numerics: Decision
    budget: BudgetChoice | None = None
    refits: tuple[Refit, ...] = ()
    epochs_run: int | None = None
    """The epochs the stage ran, once it has (its budget's re-fits may change the plan's)."""

    @property
    def name(self) -> str:
        return self.recipe_stage.name

    @property
    def seed(self) -> int:
        return self.recipe_stage.train.seed

    @property
    def stage(self) -> rc.Stage:
        """The stage as it trains: the recipe's, with K, numerics and budget applied."""
        stage = self.numerics.chosen.apply(self.k.apply(self.recipe_stage))
        return scale_stage(stage, self.budget.probe.epochs) if self.budget else stage

    def describe(self) -> list[str]:
        """One line per decision, for the log and ``deepclust show RUN``."""
        lines = [f"device {self.device}, seed {self.seed}", self.k.describe(),
                 self.numerics.describe()]
        if self.budget is not None:
            lines.append(self.budget.describe())
        lines.extend(refit.describe() for refit in self.refits)
        if self.epochs_run is not None and self.epochs_run != self.stage.train.epochs:
            lines.append(f"ran {self.epochs_run} of the {self.stage.train.epochs} planned "
                         "epoch(s)")
        return lines

    @property
    def epochs_due(self) -> int:
        """The epochs after which the stage is finished: those its budget's re-fits left it,
        else the planned ones."""
        if self.budget is not None and self.epochs_run is not None:
            return self.epochs_run
        return self.stage.train.epochs

    def ran(self, epochs: int, refits: list[Refit]) -> StagePlan:
        """This plan once the stage ran ``epochs`` epochs after ``refits``."""
        return attrs.evolve(self, refits=tuple(refits), epochs_run=epochs)

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.name, "index": self.index, "device": str(self.device),
                "seed": self.seed, "epochs": self.stage.train.epochs, "k": self.k.to_json(),
                "numerics": self.numerics.to_json(),
                "budget": self.budget.to_json() if self.budget else None,
                "refits": [attrs.asdict(r) for r in self.refits],
                "epochs_run": self.epochs_run}

    def save(self, folder: Path) -> Path:
        """``folder/plan.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / PLAN_FILE
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    @classmethod
    def load(cls, folder: Path, recipe_stage: rc.Stage) -> StagePlan | None:
        """The plan ``recipe_stage`` trained with, from ``folder/plan.json``; None where the
        stage has none (it never trained). A file that holds no plan (cut short, edited) is a
        UserError naming it."""
        path = folder / PLAN_FILE
        if not path.exists():
            return None
        remedy = "restore it from a copy of the run, or train the stage again into a new --out"
        payload = read_json(path, remedy)
        try:
            budget = payload.get("budget")
            return cls(int(payload["index"]), recipe_stage, torch.device(payload["device"]),
                       KChoice.from_json(payload["k"]),
                       attrs.evolve(Decision.from_json(payload["numerics"]), cached=False),
                       BudgetChoice.from_json(budget) if budget else None,
                       tuple(Refit(**r) for r in payload.get("refits", [])),
                       payload.get("epochs_run"))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{path} holds no stage plan ({type(exc).__name__}: {exc}); "
                            f"{remedy}") from None


@attrs.frozen
class PlanContext:
    """What planning a stage reads besides the stage: the run's plugins, data and device,
    the hand-off of the stages before (``previous``, and ``earlier`` by name), the clock
    (``started``, ``time.perf_counter`` at the run's start), how many stages share the
    budget that is left (``stages_left``) and, for a stage that ``--resume`` continues from
    its checkpoint, the plan its interrupted run recorded (``recorded``)."""

    plugins: Plugins
    cache: DataCache
    device: torch.device
    k: KChoice
    previous: StageOutputs | None = None
    earlier: Mapping[str, StageOutputs] = attrs.field(factory=dict)
    started: float = attrs.field(factory=time.perf_counter)
    stages_left: int = 1
    numerics_cache: DecisionCache | None = None
    recorded: StagePlan | None = None


def plan_stage(stage: rc.Stage, index: int, context: PlanContext) -> StagePlan:
    """Every decision for ``stage`` (the ``index``-th of its recipe). The stage is composed
    once for its probes, only when a probe runs: the numerics trials (``"auto"`` settings
    or ``compile = true``), capped at a share of the stage's time (its share of the budget
    where it has one), and the budget's timing (``train.budget``). A resumed stage keeps the
    numerics its checkpoint was trained in (where this device still offers them) and the
    budget its interrupted run planned (``context.recorded``): a new probe could choose other
    numerics, or lay the schedule out again."""
    if stage.train.epochs == 0:
        return StagePlan(index, stage, context.device, context.k,
                         Decision(candidates(stage.train, context.device)[0]))
    datasets = stage_datasets(context.cache, stage)

    def seconds_left() -> float:
        elapsed = time.perf_counter() - context.started
        return (parse_budget(stage.train.budget) - elapsed) / context.stages_left

    budgeted = stage.train.budget is not None
    probe = StageProbe(context.plugins, context.k.apply(stage), datasets, context.device,
                       context.previous, dict(context.earlier),
                       seconds_left() if budgeted else None)
    recorded = context.recorded
    if recorded is not None and recorded.device == context.device and \
            recorded.numerics.chosen in candidates(stage.train, context.device):
        numerics = recorded.numerics
    else:
        numerics = probe.numerics(context.numerics_cache)
    budget = None
    if budgeted and recorded is not None and recorded.budget is not None:
        budget = recorded.budget
    elif budgeted:
        seconds = seconds_left()
        probe_started = time.perf_counter()
        timing = probe.budget(numerics.chosen, seconds)
        budget = BudgetChoice(seconds - (time.perf_counter() - probe_started), timing)
    return StagePlan(index, stage, context.device, context.k, numerics, budget)
