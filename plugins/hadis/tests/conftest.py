"""Fixtures for the HaDis tests: the propos and hadis plugins loaded through their entry points
(and only them), and a real training step composed from the hadis recipe."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import corekit.builtins  # noqa: F401  (heavy imports at collection, not in a test)
from corekit import recipe as rc
from corekit.cli import recipe_finder
from corekit.composer import Composed, compose
from corekit.data import ImageSet, load_dataset
from corekit.plugins import Plugins, load_plugins
from corekit.step import Step


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Plugins:
    monkeypatch.setenv("DEEPCLUST_PLUGINS", "propos,hadis")
    return load_plugins()


@pytest.fixture(scope="session")
def digits() -> ImageSet:
    return load_dataset("digits")


@pytest.fixture
def compose_step(plugins: Plugins, digits: ImageSet) -> Callable[..., tuple[Composed, Step]]:
    """``compose_step(recipe, epoch, *overrides)``: the composed digits preset of ``recipe`` and
    one step on 32 images at ``epoch``, with every ``on_epoch_start`` hook already called and
    pseudo-labels ``i mod K``."""

    def build(recipe: str = "hadis", epoch: int = 0, *overrides: str) -> tuple[Composed, Step]:
        stage = rc.resolve(recipe, recipe_finder(plugins), "digits", list(overrides)).stages[0]
        composed = compose(plugins, stage, lambda name: digits, torch.device("cpu"))
        for name in composed.model.online.names():
            hook = getattr(composed.model.online.part(name), "on_epoch_start", None)
            if hook is not None:
                hook(epoch, stage.train.epochs)
        labels = torch.arange(len(digits)) % composed.n_clusters
        composed.pseudo.write(labels, torch.zeros(composed.n_clusters, 1))
        indices = torch.arange(32)
        images = digits.batch(indices)
        step = Step(model=composed.model, views=[view(images) for view in composed.views],
                    indices=indices, epoch=epoch, global_step=1, epochs=stage.train.epochs,
                    pseudo=composed.pseudo)
        return composed, step

    return build
