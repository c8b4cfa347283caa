"""Fixtures for the HaDis tests: the propos and hadis plugins loaded through their entry points
(and only them), and a real training step composed from the hadis recipe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import corekit.builtins  # noqa: F401  (heavy imports at collection, not in a test)
from corekit.composer import Composed
from corekit.data import ImageSet, load_dataset
from corekit.plugins import Plugins
from corekit.step import Step
from corekit.testing import compose_trainer, load_only


@pytest.fixture
def plugins() -> Plugins:
    return load_only("propos,hadis")


@pytest.fixture(scope="session")
def digits() -> ImageSet:
    return load_dataset("digits")


@pytest.fixture
def compose_step(plugins: Plugins, digits: ImageSet,
                 tmp_path: Path) -> Callable[..., tuple[Composed, Step]]:
    """``compose_step(recipe, epoch, *overrides)``: the composed digits preset of ``recipe`` and
    one step (global step 1) on 32 images at ``epoch``, made by the stage's trainer after every
    ``on_epoch_start`` hook has fired for ``epoch``, with pseudo-labels ``i mod K``."""

    def build(recipe: str = "hadis", epoch: int = 0, *overrides: str) -> tuple[Composed, Step]:
        trainer = compose_trainer(plugins, recipe, tmp_path, *overrides, dataset=digits)
        composed = trainer.composed
        trainer.ctx.epoch = epoch
        trainer.hooks.fire("on_epoch_start", trainer.ctx)
        labels = torch.arange(len(digits)) % composed.n_clusters
        composed.pseudo.write(labels, torch.zeros(composed.n_clusters, 1))
        indices = torch.arange(32)
        images = digits.batch(indices)
        trainer.global_step = 1
        step = trainer.make_step(indices, [view(images) for view in composed.views.values()], epoch)
        return composed, step

    return build
