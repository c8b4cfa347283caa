"""Fixtures for the DigPro tests: the propos and digpro plugins loaded through their entry points
(and only them), and a real trainer and training step composed from the digpro recipe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import corekit.builtins  # noqa: F401  (heavy imports at collection, not in a test)
from corekit import recipe as rc
from corekit.composer import Composed, compose
from corekit.data import ImageSet, load_dataset
from corekit.engine.trainer import StageTrainer
from corekit.plugins import Plugins, load_plugins
from corekit.step import Step

CPU = torch.device("cpu")


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Plugins:
    monkeypatch.setenv("DEEPCLUST_PLUGINS", "propos,digpro")
    return load_plugins()


@pytest.fixture(scope="session")
def digits() -> ImageSet:
    return load_dataset("digits")


@pytest.fixture
def trainer_for(plugins: Plugins, digits: ImageSet,
                tmp_path: Path) -> Callable[..., StageTrainer]:
    """``trainer_for(*overrides)``: a StageTrainer of the composed digpro digits preset (with
    ``overrides``), networks in train mode, pseudo-labels ``i mod K``."""

    def build(*overrides: str) -> StageTrainer:
        stage = rc.resolve("digpro", plugins.find_recipe, "digits", list(overrides)).stages[0]
        composed = compose(plugins, stage, lambda name: digits, CPU, steps_per_epoch=14)
        trainer = StageTrainer(composed, tmp_path, CPU, None, 0, lambda _: None, progress=False)
        composed.model.online.train()
        for branch in composed.model.branches.values():
            branch.network.train()
        labels = torch.arange(len(digits)) % composed.n_clusters
        composed.pseudo.write(labels, torch.zeros(composed.n_clusters, 1))
        return trainer

    return build


@pytest.fixture
def compose_step(trainer_for: Callable[..., StageTrainer],
                 digits: ImageSet) -> Callable[..., tuple[Composed, Step]]:
    """``compose_step(epoch, *overrides)``: the composed digits preset and one step (global
    step 1) on 32 images at ``epoch``, after every ``on_epoch_start`` hook fired for it."""

    def build(epoch: int = 0, *overrides: str) -> tuple[Composed, Step]:
        trainer = trainer_for(*overrides)
        trainer.ctx.epoch = epoch
        trainer.hooks.fire("on_epoch_start", trainer.ctx)
        indices = torch.arange(32)
        images = digits.batch(indices)
        trainer.global_step = 1
        views = [view(images) for view in trainer.composed.views.values()]
        step = trainer.make_step(indices, views, epoch)
        return trainer.composed, step

    return build
