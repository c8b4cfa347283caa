"""A training run: stages in order, a run directory, seeds, final metrics and the report."""

from __future__ import annotations

import json
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from corekit import metrics
from corekit import recipe as rc
from corekit.composer import compose
from corekit.data import ImageSet, load_dataset
from corekit.engine import checkpoint
from corekit.engine.devices import resolve_device, resolve_precision
from corekit.engine.trainer import StageTrainer, steps_per_epoch
from corekit.network import Network
from corekit.plugins import Plugins, check_requirements
from corekit.report import write_report


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class DataCache:
    """Datasets loaded once per run and moved to the device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._sets: dict[str, ImageSet] = {}

    def __call__(self, name: str, subset: int | None = None, seed: int = 0) -> ImageSet:
        key = f"{name}|{subset}|{seed}"
        if key not in self._sets:
            data = load_dataset(name)
            if subset:
                data = data.subset(subset, seed)
            self._sets[key] = data.to(self.device)
        return self._sets[key]


def _versions(plugins: Plugins) -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "plugins": plugins.versions()}


def _open_run_dir(out: Path, recipe: rc.Recipe, plugins: Plugins, resume: bool) -> None:
    """Create the run directory once the first stage's data and model are built, so a run that
    fails on a bad data name or component leaves no half-empty directory behind."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.toml").write_text(rc.to_toml(recipe.raw))
    (out / "versions.json").write_text(json.dumps(_versions(plugins), indent=2))
    if not resume:
        (out / "metrics.jsonl").unlink(missing_ok=True)


def train(recipe: rc.Recipe, out: Path, plugins: Plugins, resume: bool = False,
          log: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Train every stage of ``recipe`` into ``out``; return and write ``final.json``."""
    check_requirements(recipe.requires, plugins, recipe.name)
    payload = checkpoint.load(out / "checkpoint.pt") if resume else None
    opened = False
    first = recipe.stages[0]
    device = resolve_device(first.train.device)
    cache = DataCache(device)
    previous: Network | None = None
    result: dict[str, float] = {}
    t0 = time.perf_counter()
    for index, stage in enumerate(recipe.stages):
        if payload is not None and index < payload["stage"]:
            continue
        seed_everything(stage.train.seed)
        dtype = resolve_precision(stage.train.precision, device)

        def datasets(name: str, _s=stage) -> ImageSet:
            return cache(name, _s.data.subset, _s.train.seed)

        train_set = datasets(stage.data.reference if stage.data.source == "reference"
                             else stage.data.name)
        steps = steps_per_epoch(len(train_set), stage.train.batch_size, stage.train.drop_last,
                                stage.train.steps_per_epoch)
        composed = compose(plugins, stage, datasets, device, previous, steps)
        if not opened:
            _open_run_dir(out, recipe, plugins, resume)
            opened = True
        trainer = StageTrainer(composed, out, device, dtype, index, log, progress)
        if payload is not None and index == payload["stage"]:
            trainer.load_state_dict(payload)
            log(f"resumed {stage.name} after epoch {payload['epoch'] + 1}")
        log(f"stage {stage.name}: {len(train_set)} images of {train_set.name}, "
            f"{composed.n_clusters} clusters, {stage.train.epochs} epochs x {trainer.steps} steps "
            f"on {device}")
        result = trainer.run()
        previous = composed.model.online
        payload = None
    final = {**result, "recipe": recipe.name, "data": recipe.stages[-1].data.name,
             "seconds": time.perf_counter() - t0, "device": str(device)}
    (out / "final.json").write_text(json.dumps(final, indent=2))
    write_report(out)
    return final


def train_seeds(recipe: rc.Recipe, out: Path, plugins: Plugins, seeds: int,
                log: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Train ``seeds`` runs (seed, seed+1, ...) in ``out/seed-<s>``; report mean ± std."""
    runs = []
    base = recipe.stages[0].train.seed
    for i in range(seeds):
        for stage in recipe.stages:
            stage.train.seed = base + i
        log(f"== seed {base + i} ==")
        runs.append(train(recipe, out / f"seed-{base + i}", plugins, log=log, progress=progress))
    summary = metrics.summarize(runs)
    final = {"recipe": recipe.name, "seeds": [base + i for i in range(seeds)], "runs": runs,
             **{f"{k}_{stat}": v for k, stats in summary.items() for stat, v in stats.items()}}
    for key in ("nmi", "acc", "ari"):
        final[key] = summary[key]["mean"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "final.json").write_text(json.dumps(final, indent=2))
    return final


def evaluate_run(run_dir: Path, plugins: Plugins) -> dict[str, float]:
    """Re-evaluate the last checkpoint of ``run_dir`` with its own resolved recipe."""
    recipe = rc.validate(rc.load_toml(run_dir / "recipe.toml"))
    payload = checkpoint.load(run_dir / "checkpoint.pt")
    stage = recipe.stages[payload["stage"]]
    device = resolve_device(stage.train.device)
    cache = DataCache(device)

    def datasets(name: str) -> ImageSet:
        return cache(name, stage.data.subset, stage.train.seed)

    composed = compose(plugins, stage, datasets, device)
    trainer = StageTrainer(composed, run_dir, device, resolve_precision(stage.train.precision,
                                                                        device),
                           payload["stage"], print, progress=False)
    trainer.load_state_dict(payload)
    return trainer.evaluate()
