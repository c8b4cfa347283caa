"""Running a planned stage: compose it once, train it, save what the next stage reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from corekit import distributed
from corekit.assign import write_assignments
from corekit.budget import Pacer
from corekit.checkpoint_io import load as load_checkpoint
from corekit.composer import compose
from corekit.engine.devices import resolve_precision
from corekit.engine.seed import seed_everything
from corekit.engine.steps import stage_steps
from corekit.engine.trainer import StageTrainer
from corekit.handoff import StageOutputs
from corekit.runner.data_cache import stage_datasets
from corekit.runner.plan import PlanContext, StagePlan

CHECKPOINT_FILE = "checkpoint.pt"


@attrs.frozen
class StageResult:
    """What a trained stage leaves: its hand-off to the next stage and its metrics."""

    outputs: StageOutputs
    metrics: dict[str, Any]


def stage_dir(out: Path, name: str) -> Path:
    """Where stage ``name`` keeps its plan, checkpoint and outputs: ``RUN/stages/<name>``."""
    return out / "stages" / name


def budget_as_recorded(plan: StagePlan, folder: Path, done: int) -> StagePlan:
    """``plan`` resumed after ``done`` epochs: a budgeted stage keeps the budget its
    interrupted run planned (the probe's epochs, so the same schedule) and the re-fits that
    run made up to then (``folder``'s ``plan.json``); a new probe's would lay the schedule
    out again."""
    recorded = StagePlan.load(folder, plan.recipe_stage)
    if plan.budget is None or recorded is None or recorded.budget is None:
        return plan
    kept = tuple(refit for refit in recorded.refits if refit.epoch <= done)
    return attrs.evolve(plan, budget=recorded.budget, refits=kept)


def budget_pacer(plan: StagePlan, folder: Path, done: int | None) -> Pacer | None:
    """The pacer of ``plan``'s budgeted stage (None without a budget), resumed after ``done``
    epochs with its re-fits where given; it records each new re-fit in ``folder``'s
    ``plan.json`` as it is taken, so a ``--resume`` finds it."""
    if plan.budget is None:
        return None
    if done is None:
        pacer = plan.budget.pacer(plan.stage)
    else:
        pacer = plan.budget.resumed_pacer(plan.stage, plan.refits, done)
    if distributed.is_main():
        pacer.on_refit = lambda _: attrs.evolve(plan, refits=tuple(pacer.refits)).save(folder)
    return pacer


def run_stage(plan: StagePlan, context: PlanContext, out: Path, *, resume: bool = False,
              log: Callable[[str], None] = print, progress: bool = True) -> StageResult:
    """Train ``plan``'s stage into ``out``: its plan, checkpoint, outputs, ``final.json`` and
    ``assignments.csv`` go to ``out/stages/NAME``; its metrics to ``out/metrics.jsonl``.
    With ``resume`` it continues from the stage's checkpoint where there is one.

    Under torchrun every rank trains; only rank 0 writes (the others read rank 0's checkpoint
    after a barrier), and each rank re-seeds its augmentations from (seed, rank)."""
    folder = stage_dir(out, plan.name)
    payload = None
    distributed.barrier()
    if resume and (folder / CHECKPOINT_FILE).exists():
        payload = load_checkpoint(folder / CHECKPOINT_FILE)
        log(f"resumed {plan.name} after epoch {payload['epoch'] + 1}")
        plan = budget_as_recorded(plan, folder, payload["epoch"] + 1)
        if plan.refits:
            log(f"  budget: continues as re-fitted before, {plan.refits[-1].describe()}")
    stage = plan.stage
    pacer = budget_pacer(plan, folder, None if payload is None else payload["epoch"] + 1)
    distributed.barrier()
    main = distributed.is_main()
    if main:
        plan.save(folder)
    datasets = stage_datasets(context.cache, stage)
    seed_everything(stage.train.seed)
    composed = compose(context.plugins, stage, datasets, plan.device, context.previous,
                       stage_steps(stage, datasets), dict(context.earlier))
    distributed.seed_rank(stage.train.seed)
    trainer = StageTrainer(composed, out, plan.device,
                           resolve_precision(stage.train.precision, plan.device), plan.index,
                           log, progress, folder, pacer)
    if pacer is not None:
        trainer.epochs = pacer.epochs
    log(f"stage {stage.name}: {len(composed.train_set)} images of "
        f"{composed.train_set.name}, {composed.n_clusters} clusters, {stage.train.epochs} "
        f"epochs x {trainer.steps} steps on {plan.device}")
    metrics = trainer.run(payload)
    refits = pacer.refits if pacer is not None else []
    outputs = composed.outputs(trainer.epochs)
    if pacer is not None:
        metrics = {**metrics, "epochs": trainer.epochs,
                   "budget_refits": [attrs.asdict(r) for r in refits]}
    cluster, confidence = trainer.assigned()  # every rank: a clustering gathers rows
    if not main:
        return StageResult(outputs, metrics)
    plan.ran(trainer.epochs, refits).save(folder)
    outputs.save(folder)
    (folder / "final.json").write_text(json.dumps(metrics, indent=2))
    data = composed.train_set
    write_assignments(folder / "assignments.csv", cluster, confidence, data.names,
                      data.labels if data is composed.eval_set else None,
                      getattr(data, "classes", None))
    return StageResult(outputs, metrics)
