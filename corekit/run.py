"""A training run: stages in order, a run directory, seeds, final metrics and the report."""

from __future__ import annotations

import json
import platform
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from corekit import metrics
from corekit import recipe as rc
from corekit.assign import write_assignments
from corekit.budget import Deadline, parse_budget, scale_stage
from corekit.composer import Composed, CompositionError, compose
from corekit.data import BUILTIN_DATASETS, ImageSet, Loader, load_dataset
from corekit.engine import checkpoint
from corekit.engine.devices import resolve_device, resolve_precision
from corekit.engine.numerics import RUN_FILE, saved_choice
from corekit.engine.trainer import StageTrainer
from corekit.errors import TrainingError, UserError
from corekit.estimate_k import KEstimate, estimate_k
from corekit.handoff import OUTPUTS_FILE, StageOutputs
from corekit.plugins import Plugins, check_requirements
from corekit.report import write_report, write_seeds_report
from corekit.run_files import load_run_recipe, public_data_name, write_run_files
from corekit.stage_probe import choose_numerics, probe_budget, seed_everything, stage_steps


class DataCache:
    """Datasets loaded once per run and moved to the device. ``loaders`` are the registered
    datasets (``Plugins.datasets()``); by default the core's."""

    def __init__(self, device: torch.device,
                 loaders: Mapping[str, Loader] = BUILTIN_DATASETS) -> None:
        self.device = device
        self.loaders = loaders
        self._sets: dict[str, ImageSet] = {}

    def __call__(self, name: str, subset: int | None = None, seed: int = 0) -> ImageSet:
        key = f"{name}|{subset}|{seed}"
        if key not in self._sets:
            data = load_dataset(name, loaders=self.loaders)
            if subset and subset > len(data):
                warnings.warn(f"data.subset = {subset} is more than the {len(data)} images of "
                              f"{data.name}: all of them are used", stacklevel=2)
            if subset:
                data = data.subset(subset, seed)
            self._sets[key] = data.to(self.device)
        return self._sets[key]


def _versions(plugins: Plugins) -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "plugins": plugins.versions()}


def _open_run_dir(out: Path, recipe: rc.Recipe, plugins: Plugins, resume: bool,
                  command: str | None) -> None:
    """Create the run directory once every stage has composed, so a run that fails on a bad
    data name or component leaves no half-empty directory behind."""
    out.mkdir(parents=True, exist_ok=True)
    write_run_files(out, recipe, command)
    if "auto" in recipe.raw:
        (out / "auto_preset.json").write_text(json.dumps(recipe.raw["auto"], indent=2))
    (out / "versions.json").write_text(json.dumps(_versions(plugins), indent=2))
    if not resume:
        (out / "metrics.jsonl").unlink(missing_ok=True)


def stage_dir(out: Path, stage: rc.Stage) -> Path:
    """Where ``stage`` keeps its checkpoint and outputs: ``RUN/stages/<name>``."""
    return out / "stages" / stage.name


def stage_datasets(cache: DataCache, stage: rc.Stage) -> Callable[[str], ImageSet]:
    """The data-set loader a stage composes with: ``name`` → the stage's subset of it."""
    def datasets(name: str) -> ImageSet:
        return cache(name, stage.data.subset, stage.train.seed)
    return datasets


def check_recipe(recipe: rc.Recipe, plugins: Plugins, cache: DataCache) -> list[Composed]:
    """Compose every stage, each on the hand-off of the one before, without training; one
    ``CompositionError`` lists every problem of every stage."""
    check_requirements(recipe.requires, plugins, recipe.name)
    problems: list[str] = []
    composed: list[Composed] = []
    earlier: dict[str, StageOutputs] = {}
    previous: StageOutputs | None = None
    for stage in recipe.stages:
        prefix = f"stage {stage.name!r}: " if len(recipe.stages) > 1 else ""
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


def fill_missing_k(recipe: rc.Recipe, cache: DataCache,
                   log: Callable[[str], None]) -> list[KEstimate]:
    """Set ``data.n_clusters`` of every stage that trains on an unlabelled set and was given no
    K (``--k``), from ``corekit.estimate_k``; the estimates are saved in the run directory."""
    estimates = []
    for stage in recipe.stages:
        if stage.data.n_clusters:
            continue
        datasets = stage_datasets(cache, stage)
        data = datasets(stage.data.trained_on())
        if data.num_classes:
            continue
        estimate = estimate_k(data, stage.train.seed)
        stage.data.n_clusters = estimate.k
        index = recipe.stages.index(stage)
        keys = ["stage", str(index)] if "stage" in recipe.raw else []
        recipe.raw = rc.apply_override(recipe.raw, [*keys, "data", "n_clusters"], estimate.k)
        estimates.append(estimate)
        log(f"stage {stage.name}: {data.name} has no labels and no K was given (--k N); "
            f"estimated K = {estimate.k} by the silhouette of k-means on the pixels of "
            f"{estimate.n_images} images (k_estimate.json, k_estimate.png)")
    return estimates


def _saved(out: Path, stage: rc.Stage) -> bool:
    return (stage_dir(out, stage) / OUTPUTS_FILE).exists()


def _finished(out: Path, stage: rc.Stage) -> bool:
    """The stage saved its outputs after all of its (possibly raised) ``train.epochs``."""
    folder = stage_dir(out, stage)
    return _saved(out, stage) and StageOutputs.load(folder).epochs >= stage.train.epochs


def train(recipe: rc.Recipe, out: Path, plugins: Plugins, resume: bool = False,
          log: Callable[[str], None] = print, progress: bool = True,
          only: str | None = None, command: str | None = None) -> dict[str, Any]:
    """Train every stage of ``recipe`` into ``out``; return and write ``final.json``.

    A stage with ``train.budget`` is fitted to it (``corekit.budget``); the budget counts from
    this call (after the program's start-up) and is shared by the stages still to train.

    Every stage is composed first (``check_recipe``), so a mistake in a later stage stops the
    run before the first one trains. With ``resume`` finished stages are skipped and the
    interrupted one continues from its checkpoint. ``only = NAME`` reruns stage NAME alone
    from the saved outputs of the stages before it.
    """
    t0 = time.perf_counter()
    if "auto" in recipe.raw:
        log(recipe.raw["auto"]["line"])
    first = recipe.stages[0]
    device = resolve_device(first.train.device)
    cache = DataCache(device, plugins.datasets())
    estimates = fill_missing_k(recipe, cache, log)
    check_recipe(recipe, plugins, cache)
    target = recipe.stage(only) if only else None
    target_index = recipe.stages.index(target) if target is not None else None
    if resume and target is None and all(_finished(out, s) for s in recipe.stages):
        raise TrainingError(f"the run in {out} is finished (every stage saved its outputs); "
                            "rerun one stage with --stage NAME, or train into a new --out")
    earlier: dict[str, StageOutputs] = {}
    previous: StageOutputs | None = None
    result: dict[str, float] = {}
    opened = False
    for index, stage in enumerate(recipe.stages):
        folder = stage_dir(out, stage)
        before_target = target_index is not None and target_index > index
        if before_target or (resume and target is None and _finished(out, stage)):
            if not _saved(out, stage):
                raise TrainingError(f"--stage {only}: stage {stage.name!r} before it has no "
                                    f"saved outputs in {folder}; train the run up to it first")
            previous = earlier[stage.name] = StageOutputs.load(folder)
            continue
        if target_index is not None and index != target_index:
            continue
        datasets = stage_datasets(cache, stage)
        numerics = None
        if stage.train.epochs > 0:
            numerics = choose_numerics(plugins, stage, datasets, device, previous, earlier)
            if numerics.trials:
                log(f"stage {stage.name}: {numerics.describe()}")
            stage = recipe.stages[index] = numerics.chosen.apply(stage)
        dtype = resolve_precision(stage.train.precision, device)
        deadline = None
        if stage.train.budget is not None and stage.train.epochs > 0:
            stages_left = len(recipe.stages) - index if target is None else 1
            share = (parse_budget(stage.train.budget) - (time.perf_counter() - t0)) / stages_left
            started = time.perf_counter()
            budget_plan = probe_budget(plugins, stage, datasets, device, previous, earlier,
                                       share)
            share -= time.perf_counter() - started
            log(f"stage {stage.name}: {budget_plan.describe()}")
            stage = recipe.stages[index] = scale_stage(stage, budget_plan.epochs)
            deadline = Deadline.after(share - budget_plan.seconds_per_estep)
        seed_everything(stage.train.seed)
        composed = compose(plugins, stage, datasets, device, previous, stage_steps(stage, datasets),
                           earlier)
        if not opened:
            _open_run_dir(out, recipe, plugins, resume or target is not None, command)
            for estimate in estimates:
                estimate.save(out)
            opened = True
        if numerics is not None and numerics.trials:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / RUN_FILE).write_text(json.dumps(numerics.to_json(), indent=2))
        trainer = StageTrainer(composed, out, device, dtype, index, log, progress, folder,
                               deadline)
        payload = None
        if resume and trainer.checkpoint_path.exists():
            payload = checkpoint.load(trainer.checkpoint_path)
            log(f"resumed {stage.name} after epoch {payload['epoch'] + 1}")
        elif resume and index == 0:
            raise TrainingError(f"no checkpoint at {trainer.checkpoint_path}; start without "
                                "--resume")
        log(f"stage {stage.name}: {len(composed.train_set)} images of "
            f"{composed.train_set.name}, {composed.n_clusters} clusters, {stage.train.epochs} "
            f"epochs x {trainer.steps} steps on {device}")
        result = trainer.run(payload)
        previous = earlier[stage.name] = composed.outputs(stage.train.epochs)
        previous.save(folder)
        (folder / "final.json").write_text(json.dumps(result, indent=2))
        cluster, confidence = trainer.assigned()
        data = composed.train_set
        write_assignments(folder / "assignments.csv", cluster, confidence, data.names,
                          data.labels if data is composed.eval_set else None)
    final = {**result, "recipe": recipe.name,
             "data": public_data_name(recipe.stages[-1].data.name),
             "seconds": time.perf_counter() - t0, "device": str(device)}
    if target_index in (None, len(recipe.stages) - 1):
        (out / "final.json").write_text(json.dumps(final, indent=2))
        shutil.copyfile(stage_dir(out, recipe.stages[-1]) / "assignments.csv",
                        out / "assignments.csv")
        write_report(out, plugins)
    return final


def train_seeds(recipe: rc.Recipe, out: Path, plugins: Plugins, seeds: int,
                log: Callable[[str], None] = print, progress: bool = True,
                command: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Train ``seeds`` runs (seed, seed+1, ...) in ``out/seed-<s>``; report mean ± std in
    ``out/final.json`` and ``out/report.md``. With ``resume`` a finished seed is read back, an
    interrupted one continues from its checkpoint and a missing one starts."""
    runs = []
    base = recipe.stages[0].train.seed
    for i in range(seeds):
        for stage in recipe.stages:
            stage.train.seed = base + i
        recipe.raw = rc.apply_override(recipe.raw, ["train", "seed"], base + i)
        folder = out / f"seed-{base + i}"
        if resume and all(_finished(folder, s) for s in recipe.stages) \
                and (folder / "final.json").exists():
            log(f"== seed {base + i}: finished, read from {folder / 'final.json'} ==")
            runs.append(json.loads((folder / "final.json").read_text()))
            continue
        started = resume and any((stage_dir(folder, s) / "checkpoint.pt").exists()
                                 for s in recipe.stages)
        log(f"== seed {base + i}{' (resumed)' if started else ''} ==")
        runs.append(train(recipe, folder, plugins, resume=started, log=log, progress=progress,
                          command=command))
    summary = metrics.summarize(runs)
    final = {"recipe": recipe.name, "seeds": [base + i for i in range(seeds)], "runs": runs,
             **{f"{k}_{stat}": v for k, stats in summary.items() for stat, v in stats.items()}}
    for key in ("nmi", "acc", "ari"):
        if key in summary:
            final[key] = summary[key]["mean"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "final.json").write_text(json.dumps(final, indent=2))
    write_seeds_report(out, final, command)
    return final


def last_checkpoint(run_dir: Path, recipe: rc.Recipe) -> tuple[int, Path]:
    """The index and checkpoint of the last stage of ``run_dir`` that wrote one."""
    for index in reversed(range(len(recipe.stages))):
        path = stage_dir(run_dir, recipe.stages[index]) / "checkpoint.pt"
        if path.exists():
            return index, path
    raise TrainingError(f"no checkpoint in {run_dir}/stages; train the run first")


def evaluate_run(run_dir: Path, plugins: Plugins) -> dict[str, float]:
    """Re-evaluate the last checkpoint of ``run_dir`` with its own resolved recipe."""
    recipe = load_run_recipe(run_dir)
    index, path = last_checkpoint(run_dir, recipe)
    payload = checkpoint.load(path)
    stage = recipe.stages[index]
    chosen = saved_choice(path.parent)
    if chosen is not None:
        stage = chosen.apply(stage)
    earlier = {s.name: StageOutputs.load(stage_dir(run_dir, s)) for s in recipe.stages[:index]}
    previous = earlier[recipe.stages[index - 1].name] if index else None
    device = resolve_device(stage.train.device)
    datasets = stage_datasets(DataCache(device, plugins.datasets()), stage)
    composed = compose(plugins, stage, datasets, device, previous, stage_steps(stage, datasets),
                       earlier)
    trainer = StageTrainer(composed, run_dir, device,
                           resolve_precision(stage.train.precision, device), index, print,
                           progress=False, stage_dir=path.parent)
    trainer.load_state_dict(payload)
    return trainer.evaluate()
