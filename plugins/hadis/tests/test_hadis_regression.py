"""The loss values of the hadis recipe against those recorded earlier: on fixed views as
main at c9554c8 gave them, before Core v2, and three real train steps as recorded after issue
#23 changed the views' random draws (``corekit.testing.recorded_losses`` says which and why).

``corekit.testing.loss_probe`` composes the recipe's ``digits`` preset with
``data.subset=256``, ``train.batch_size=64``, ``train.steps_per_epoch=3``,
``train.device="cpu"`` and records every loss term on fixed views and the loss terms of three
real train steps. They agree to a relative 1e-6 (bit for bit when recorded): the core must
not change what HaDis computes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corekit.testing import assert_losses_match, recorded_losses, regression_probe

RECORDED = recorded_losses(Path(__file__).parent / "data")


@pytest.fixture(scope="module")
def probe() -> dict:
    return regression_probe("propos,hadis", "hadis")


def test_losses_on_fixed_views_match_c9554c8(probe: dict) -> None:
    assert_losses_match(probe, RECORDED, "fixed_views", rel=1e-6)


def test_losses_of_three_train_steps_match_the_batched_views_record(probe: dict) -> None:
    assert_losses_match(probe, RECORDED, "train_steps", rel=1e-6)
