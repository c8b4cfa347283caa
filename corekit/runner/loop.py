"""A training run in three layers: check every stage, then plan and run each in turn."""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from corekit import distributed, metrics
from corekit import recipe as rc
from corekit.baseline import pixel_baseline
from corekit.budget import format_seconds, parse_budget
from corekit.checkpoint_io import load as load_checkpoint
from corekit.composer import Composed, CompositionError, compose
from corekit.engine.devices import resolve_device, resolve_precision
from corekit.engine.steps import stage_steps
from corekit.engine.trainer import StageTrainer
from corekit.errors import TrainingError, UserError
from corekit.handoff import OUTPUTS_FILE, StageOutputs
from corekit.plugins import Plugins, check_requirements
from corekit.report import write_report, write_seeds_report
from corekit.run_files import load_run_recipe, public_data_name, write_run_files
from corekit.runner.data_cache import DataCache, stage_datasets
from corekit.runner.pick import pick_seed, write_picked_report
from corekit.runner.plan import KChoice, PlanContext, StagePlan, decide_k, plan_stage
from corekit.runner.run import CHECKPOINT_FILE, run_stage, stage_dir
from corekit.runner.stale import clear_stale, is_stale, mark_stale

Log = Callable[[str], None]


def check_recipe(recipe: rc.Recipe, plugins: Plugins, cache: DataCache,
                 ks: Mapping[str, KChoice] | None = None) -> list[Composed]:
    """Compose every stage, each on the hand-off of the one before, without training; one
    ``CompositionError`` lists every problem of every stage. ``ks`` holds the K decided for
    stages whose set has no labels and whose recipe gives none."""
    check_requirements(recipe.requires, plugins, recipe.name)
    problems: list[str] = []
    composed: list[Composed] = []
    earlier: dict[str, StageOutputs] = {}
    previous: StageOutputs | None = None
    for stage in recipe.stages:
        prefix = f"stage {stage.name!r}: " if len(recipe.stages) > 1 else ""
        if ks is not None and stage.name in ks:
            stage = ks[stage.name].apply(stage)
        datasets = stage_datasets(cache, stage)
        try:
            built = compose(plugins, stage, datasets, torch.device("cpu"), previous,
                            stage_steps(stage, datasets), earlier)
        except CompositionError as exc:
            problems.extend(prefix + p for p in exc.problems)
            previous = None
            continue
        except UserError as exc:
            problems.append(prefix + str(exc))
            previous = None
            continue
        if built.n_clusters > len(built.train_set):
            problems.append(f"{prefix}data.n_clusters: {built.n_clusters} clusters for "
                            f"{len(built.train_set)} images; use at most one cluster per image "
                            "(--k N)")
        previous = built.outputs()
        earlier[stage.name] = previous
        composed.append(built)
    if problems:
        raise CompositionError(problems)
    return composed


def decide_ks(recipe: rc.Recipe, cache: DataCache, log: Log) -> dict[str, KChoice]:
    """Each stage's K (``corekit.runner.plan.decide_k``); an estimate is logged."""
    ks = {stage.name: decide_k(stage, cache) for stage in recipe.stages}
    for stage in recipe.stages:
        choice = ks[stage.name]
        if choice.estimate is not None:
            data = stage_datasets(cache, stage)(stage.data.trained_on())
            log(f"stage {stage.name}: {data.name} has no labels and no K was given (--k N); "
                f"estimated K = {choice.k} by the silhouette of k-means on the pixels of "
                f"{choice.estimate.n_images} images (k_estimate.json, k_estimate.png)")
    return ks


def _saved(out: Path, stage: rc.Stage) -> bool:
    return (stage_dir(out, stage.name) / OUTPUTS_FILE).exists()


def finished(out: Path, stage: rc.Stage) -> bool:
    """The stage saved its outputs after all of its (possibly budget-cut) epochs, and no
    earlier stage was retrained since."""
    folder = stage_dir(out, stage.name)
    if not _saved(out, stage) or is_stale(folder):
        return False
    plan = StagePlan.load(folder, stage)
    epochs = stage.train.epochs if plan is None else plan.epochs_due
    return StageOutputs.load(folder).epochs >= epochs


def holds_seeds(out: Path) -> bool:
    """Whether ``out`` holds a ``--seeds`` run (``seed-<s>`` folders, no stages of its own)."""
    return not (out / "stages").exists() and any(out.glob("seed-*/recipe.toml"))


def _check_resumable(recipe: rc.Recipe, out: Path, only: str | None) -> None:
    """Refuse a ``--resume`` that has nothing to continue, before anything is written."""
    if holds_seeds(out):
        raise TrainingError(f"--out {out} holds a --seeds run; continue it with --resume "
                            "--seeds N (N as it was trained)")
    if only is not None:
        return
    if all(finished(out, s) for s in recipe.stages):
        raise TrainingError(f"the run in {out} is finished (every stage saved its outputs); "
                            "rerun one stage with --stage NAME, or train into a new --out")
    started = any(_saved(out, s) or (stage_dir(out, s.name) / "checkpoint.pt").exists()
                  for s in recipe.stages)
    if not started:
        first = stage_dir(out, recipe.stages[0].name) / "checkpoint.pt"
        raise TrainingError(f"no checkpoint at {first}; start without --resume")


def _versions(plugins: Plugins) -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "plugins": plugins.versions()}


def _write_run_files(out: Path, recipe: rc.Recipe, plugins: Plugins, ks: Mapping[str, KChoice],
                     fresh: bool, command: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_run_files(out, recipe, command)
    (out / "versions.json").write_text(json.dumps(_versions(plugins), indent=2))
    if fresh:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    for choice in ks.values():
        if choice.estimate is not None:
            choice.estimate.save(out)


def train(recipe: rc.Recipe, out: Path, plugins: Plugins, resume: bool = False,
          log: Log = print, progress: bool = True, only: str | None = None,
          command: str | None = None) -> dict[str, Any]:
    """Train every stage of ``recipe`` into ``out``; return and write ``final.json``.

    Three layers: every stage is checked first (composed without training, so a mistake in
    a later stage stops the run before the first one trains); then each stage is planned
    (``plan_stage``: K, seed, device, numerics, budget, written to its ``plan.json``) and run
    (``run_stage``). A stage with ``train.budget`` shares the budget left, counted from this
    call, with the stages still to train.

    With ``resume`` finished stages are skipped and the interrupted one continues from its
    checkpoint. ``only = NAME`` reruns stage NAME alone from the saved outputs of the stages
    before it; the stages after it are marked stale (``--resume`` retrains them).

    Under torchrun (``corekit.distributed``) every rank trains; rank 0 alone logs, makes the
    numerics decision (and sends it to the others) and writes the run folder.
    """
    main = distributed.is_main()
    if not main:
        log, progress = _quiet, False
    started = time.perf_counter()
    if "auto" in recipe.raw:
        log(recipe.raw["auto"]["line"])
    device = resolve_device(recipe.stages[0].train.device)
    cache = DataCache(device, plugins.datasets())
    ks = decide_ks(recipe, cache, log)
    check_recipe(recipe, plugins, cache, ks)
    target = recipe.stages.index(recipe.stage(only)) if only else None
    if resume:
        _check_resumable(recipe, out, only)
    distributed.barrier()
    if main:
        _write_run_files(out, recipe, plugins, ks, not (resume or only), command)
    earlier: dict[str, StageOutputs] = {}
    previous: StageOutputs | None = None
    result: dict[str, Any] = {}
    for index, stage in enumerate(recipe.stages):
        folder = stage_dir(out, stage.name)
        if (target is not None and index < target) or (
                resume and target is None and finished(out, stage)):
            if not _saved(out, stage):
                raise TrainingError(f"--stage {only}: stage {stage.name!r} before it has no "
                                    f"saved outputs in {folder}; train the run up to it first")
            previous = earlier[stage.name] = StageOutputs.load(folder)
            continue
        if target is not None and index > target:
            if _saved(out, stage) and main:
                mark_stale(folder, recipe.stages[target].name)
                log(f"stage {stage.name}: stale (trained on the earlier outputs of "
                    f"{recipe.stages[target].name}); retrain it with --resume")
            continue
        recorded = StagePlan.load(folder, stage) if resume and (
            folder / CHECKPOINT_FILE).exists() else None
        context = PlanContext(plugins, cache, device, ks[stage.name], previous, earlier,
                              started, len(recipe.stages) - index if target is None else 1,
                              recorded=recorded)
        plan = _plan_on_main(stage, index, context)
        if plan.numerics.trials:
            log(f"stage {stage.name}: {plan.numerics.describe()}")
        if plan.budget is not None:
            log(f"stage {stage.name}: {plan.budget.probe.describe()}")
        if main:
            clear_stale(folder)
        outcome = run_stage(plan, context, out, resume=resume, log=log, progress=progress)
        previous = earlier[stage.name] = outcome.outputs
        result = outcome.metrics
    final = {**result, "recipe": recipe.name,
             "data": public_data_name(recipe.stages[-1].data.name),
             "seconds": time.perf_counter() - started, "device": str(device)}
    if target in (None, len(recipe.stages) - 1) and main:
        last = recipe.stages[-1]
        baseline = pixel_baseline(stage_datasets(cache, last)(last.data.trained_on()),
                                  ks[last.name].k)
        if baseline is not None:
            final["pixel_baseline"] = baseline.to_json()
        (out / "final.json").write_text(json.dumps(final, indent=2))
        shutil.copyfile(stage_dir(out, recipe.stages[-1].name) / "assignments.csv",
                        out / "assignments.csv")
        write_report(out, plugins)
    return final


def _quiet(_: str) -> None:
    """The log of a rank other than 0 under torchrun."""


def _plan_on_main(stage: rc.Stage, index: int, context: PlanContext) -> StagePlan:
    """``plan_stage``; under torchrun rank 0 plans alone (its numerics trials and budget probe
    train as one process on the global batch) and every rank takes its plan, so all train
    alike (the budget's re-fits during training are rank 0's too, ``agreed_refit``)."""
    if not distributed.is_distributed():
        return plan_stage(stage, index, context)
    plan: StagePlan | Exception | None = None
    if distributed.is_main():
        try:
            with distributed.alone():
                plan = plan_stage(stage, index, context)
        except Exception as exc:  # every rank raises it, rather than wait for a plan
            plan = exc
    plan = distributed.broadcast(plan)
    if isinstance(plan, Exception):
        raise plan
    return plan


def seeded(recipe: rc.Recipe, seed: int) -> rc.Recipe:
    """``recipe`` with every stage's ``train.seed`` set to ``seed``, as ``--set
    train.seed=SEED`` would."""
    raw = rc.apply_override(recipe.raw, ["train", "seed"], seed)
    if isinstance(raw.get("stage"), list):
        for index in range(len(raw["stage"])):
            raw = rc.apply_override(raw, ["stage", str(index), "train", "seed"], seed)
    return rc.validate(raw)


def train_seeds(recipe: rc.Recipe, out: Path, plugins: Plugins, seeds: int,
                log: Log = print, progress: bool = True,
                command: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Train ``seeds`` runs (seed, seed+1, ...) in ``out/seed-<s>``; report mean ± std in
    ``out/final.json`` and ``out/report.md``. With ``resume`` a finished seed is read back, an
    interrupted one continues from its checkpoint and a missing one starts."""
    if resume and (out / "stages").exists():
        raise TrainingError(f"--out {out} holds a single-seed run: --resume continues it "
                            f"without --seeds; train {seeds} seeds into a new --out")
    runs = []
    base = recipe.stages[0].train.seed
    budget = recipe.stages[0].train.budget
    if budget is not None:
        log(f"budget {budget} per seed: each of the {seeds} seeds trains within it "
            f"(up to {format_seconds(seeds * parse_budget(budget))} in all)")
    for i in range(seeds):
        seed_recipe = seeded(recipe, base + i)
        folder = out / f"seed-{base + i}"
        if resume and all(finished(folder, s) for s in seed_recipe.stages) \
                and (folder / "final.json").exists():
            log(f"== seed {base + i}: finished, read from {folder / 'final.json'} ==")
            runs.append(json.loads((folder / "final.json").read_text()))
            continue
        started = resume and any((stage_dir(folder, s.name) / "checkpoint.pt").exists()
                                 for s in seed_recipe.stages)
        log(f"== seed {base + i}{' (resumed)' if started else ''} ==")
        runs.append(train(seed_recipe, folder, plugins, resume=started, log=log,
                          progress=progress, command=command))
    summary = metrics.summarize(runs)
    final = {"recipe": recipe.name, "seeds": [base + i for i in range(seeds)], "runs": runs,
             **{f"{k}_{stat}": v for k, stats in summary.items() for stat, v in stats.items()}}
    for key in ("nmi", "acc", "ari"):
        if key in summary:
            final[key] = summary[key]["mean"]
    picked = pick_seed(out, final["seeds"])
    final.update(picked_seed=picked.seed, picked_by=picked.how)
    if "pixel_baseline" in runs[0]:
        final["pixel_baseline"] = runs[0]["pixel_baseline"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "final.json").write_text(json.dumps(final, indent=2))
    write_seeds_report(out, final, command)
    shutil.copyfile(out / f"seed-{picked.seed}" / "assignments.csv", out / "assignments.csv")
    write_picked_report(out, picked, plugins)
    log(f"report and assignments.csv: seed {picked.seed}, {picked.how} "
        f"({out / 'report' / 'index.html'})")
    return final


def last_checkpoint(run_dir: Path, recipe: rc.Recipe) -> tuple[int, Path]:
    """The index and checkpoint of the last stage of ``run_dir`` that wrote one."""
    for index in reversed(range(len(recipe.stages))):
        path = stage_dir(run_dir, recipe.stages[index].name) / "checkpoint.pt"
        if path.exists():
            return index, path
    raise TrainingError(f"no checkpoint in {run_dir}/stages; train the run first")


def trained_stage(run_dir: Path, recipe: rc.Recipe, index: int) -> rc.Stage:
    """Stage ``index`` of ``run_dir`` as it trained: the recipe's, with the decisions of its
    ``plan.json`` applied."""
    stage = recipe.stages[index]
    plan = StagePlan.load(stage_dir(run_dir, stage.name), stage)
    return plan.stage if plan is not None else stage


def restore_stage(run_dir: Path, plugins: Plugins,
                  device: torch.device | None = None) -> StageTrainer:
    """A trainer of the last stage of ``run_dir`` that wrote a checkpoint, composed as it
    trained (its recipe and plan) on ``device`` (default: the stage's) with the checkpoint
    loaded: for evaluation and for reading features of a finished run."""
    recipe = load_run_recipe(run_dir)
    index, path = last_checkpoint(run_dir, recipe)
    payload = load_checkpoint(path)
    stage = trained_stage(run_dir, recipe, index)
    earlier = {s.name: StageOutputs.load(stage_dir(run_dir, s.name))
               for s in recipe.stages[:index]}
    previous = earlier[recipe.stages[index - 1].name] if index else None
    device = device or resolve_device(stage.train.device)
    datasets = stage_datasets(DataCache(device, plugins.datasets()), stage)
    composed = compose(plugins, stage, datasets, device, previous, stage_steps(stage, datasets),
                       earlier)
    trainer = StageTrainer(composed, run_dir, device,
                           resolve_precision(stage.train.precision, device), index, print,
                           progress=False, stage_dir=path.parent)
    trainer.load_state_dict(payload)
    return trainer


def evaluate_run(run_dir: Path, plugins: Plugins) -> dict[str, float]:
    """Re-evaluate the last checkpoint of ``run_dir`` with its own recipe and plans."""
    return restore_stage(run_dir, plugins).evaluate()
