"""What ``deepclust show RUN`` prints: each stage's decisions, read from its ``plan.json``."""

from __future__ import annotations

from pathlib import Path

from corekit.run_files import load_run_recipe
from corekit.runner.plan import StagePlan
from corekit.runner.run import stage_dir
from corekit.runner.stale import stale_reason


def describe_run(run_dir: Path) -> list[str]:
    """One block per stage of the run in ``run_dir``: the decisions its plan holds, or that it
    has not trained; stale stages say why."""
    recipe = load_run_recipe(run_dir)
    lines = [f"run {run_dir}: recipe {recipe.name!r}, {len(recipe.stages)} stage(s)"]
    for stage in recipe.stages:
        folder = stage_dir(run_dir, stage.name)
        plan = StagePlan.load(folder, stage)
        if plan is None:
            lines.append(f"stage {stage.name}: not trained")
            continue
        ran = (f"{plan.epochs_run} epoch(s) ran" if plan.epochs_run is not None
               else f"{plan.stage.train.epochs} epoch(s) planned")
        lines.append(f"stage {stage.name}: {ran}")
        lines.extend(f"  {line}" for line in plan.describe())
        reason = stale_reason(folder)
        if reason:
            lines.append(f"  STALE: {reason}")
    return lines
