"""How a recipe runs, in three layers: ``check`` composes every stage and reports every
problem (nothing trains); ``plan_stage`` takes every decision for one stage (K, seed, device,
numerics, budget) and returns it as a value, a :class:`StagePlan`; ``run_stage`` trains that
plan. ``train`` is the loop: check, then plan and run each stage.

A change to *how a stage runs* belongs here: a new decision is a field of ``StagePlan`` taken
in ``plan_stage``; what happens around the engine (outputs, hand-off) is ``run_stage``; the
training loop itself is ``corekit.engine``.
"""

from corekit.runner.data_cache import DataCache, Datasets, stage_datasets
from corekit.runner.loop import (
    check_recipe,
    evaluate_run,
    finished,
    last_checkpoint,
    restore_stage,
    seeded,
    train,
    train_seeds,
    trained_stage,
)
from corekit.runner.plan import BudgetChoice, KChoice, PlanContext, StagePlan, decide_k, plan_stage
from corekit.runner.probes import StageProbe
from corekit.runner.run import StageResult, run_stage, stage_dir

__all__ = [
    "BudgetChoice", "DataCache", "Datasets", "KChoice", "PlanContext", "StagePlan",
    "StageProbe", "StageResult", "check_recipe", "decide_k", "evaluate_run", "finished",
    "last_checkpoint", "plan_stage", "restore_stage", "run_stage", "seeded",
    "stage_datasets", "stage_dir", "train", "train_seeds", "trained_stage",
]
