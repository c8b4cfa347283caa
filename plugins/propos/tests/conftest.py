"""Fixtures for the ProPos tests: the core plus only the propos plugin, via its entry point,
and the trainer of a composed propos recipe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import corekit.builtins  # noqa: F401  (heavy imports at collection, not in a test)
from corekit.data import ImageSet, load_dataset
from corekit.engine.trainer import StageTrainer
from corekit.plugins import Plugins
from corekit.testing import compose_trainer, load_only


@pytest.fixture
def plugins() -> Plugins:
    return load_only("propos")


@pytest.fixture(scope="session")
def digits() -> ImageSet:
    return load_dataset("digits")


@pytest.fixture
def stage_trainer(plugins: Plugins, digits: ImageSet,
                  tmp_path: Path) -> Callable[..., StageTrainer]:
    """``stage_trainer(recipe, *overrides)``: the trainer of ``recipe``'s digits preset composed
    on CPU (``trainer.composed`` is the composed stage). To enter epoch ``e``, set
    ``trainer.ctx.epoch = e`` and fire ``trainer.hooks.fire("on_epoch_start", trainer.ctx)``."""

    def build(recipe: str = "propos", *overrides: str) -> StageTrainer:
        return compose_trainer(plugins, recipe, tmp_path, *overrides, dataset=digits)

    return build
