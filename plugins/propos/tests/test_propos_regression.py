"""The loss values of the propos recipe against those recorded from main at c9554c8, before
Core v2 (needs, lifecycle, named state, schedules as registry kinds): the rewrite of the core
must not change what ProPos computes.

``corekit.testing.loss_probe`` composes the recipe's ``digits`` preset with
``data.subset=256``, ``train.batch_size=64``, ``train.steps_per_epoch=3``,
``train.device="cpu"`` and records every loss term on fixed views and the loss terms of three
real train steps; data/loss_values_c9554c8.json holds the values main at c9554c8 gave for the
same probe. They agree to a relative 1e-6 (bit for bit when recorded).

The train steps draw random views. Issue #23 folded the views' rotation, crop and flip into one
affine warp per batch (``corekit.components.augment.RandomGeometry``): the same parameter
distributions (tests/core/test_augment.py) but other pixels; it then drew the colour jitter's
parameters in one batched op (``RandomColorJitter``: kornia's distributions, other random
numbers). So the train-step values are compared with data/train_steps_batched_views.json,
recorded right after those changes; the values on fixed views still match c9554c8.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corekit.testing import assert_losses_match, regression_probe

RECORDED = json.loads((Path(__file__).parent / "data" / "loss_values_c9554c8.json").read_text())
BATCHED_VIEWS = json.loads(
    (Path(__file__).parent / "data" / "train_steps_batched_views.json").read_text())


@pytest.fixture(scope="module")
def probe() -> dict:
    return regression_probe("propos", "propos")


def test_losses_on_fixed_views_match_c9554c8(probe: dict) -> None:
    assert_losses_match(probe, RECORDED, "fixed_views", rel=1e-6)


def test_losses_of_three_train_steps_match_the_batched_views_record(probe: dict) -> None:
    assert_losses_match(probe, BATCHED_VIEWS, "train_steps", rel=1e-6)
