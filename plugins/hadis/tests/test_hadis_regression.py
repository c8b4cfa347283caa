"""The loss values of the hadis recipe against those recorded from main at c9554c8, before
Core v2 (needs, lifecycle, named state, schedules as registry kinds): the rewrite of the core
must not change what HaDis computes.

``corekit.testing.loss_probe`` composes the recipe's ``digits`` preset with
``data.subset=256``, ``train.batch_size=64``, ``train.steps_per_epoch=3``,
``train.device="cpu"`` and records every loss term on fixed views and the loss terms of three
real train steps; data/loss_values_c9554c8.json holds the values main at c9554c8 gave for the
same probe. They agree to a relative 1e-6 (bit for bit when recorded).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corekit.plugins import load_plugins
from corekit.testing import loss_probe

RECORDED = json.loads((Path(__file__).parent / "data" / "loss_values_c9554c8.json").read_text())
REL = 1e-6


@pytest.fixture(scope="module")
def probe() -> dict:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPCLUST_PLUGINS", "propos,hadis")
        return loss_probe(load_plugins(), "hadis")


def test_losses_on_fixed_views_match_c9554c8(probe: dict) -> None:
    recorded = RECORDED["fixed_views"]
    assert list(probe["fixed_views"]) == list(recorded)
    assert probe["fixed_views"] == pytest.approx(recorded, rel=REL, abs=0)


def test_losses_of_three_train_steps_match_c9554c8(probe: dict) -> None:
    recorded = RECORDED["train_steps"]
    assert len(probe["train_steps"]) == len(recorded) == 3
    for index, (got, want) in enumerate(zip(probe["train_steps"], recorded, strict=True)):
        assert sorted(got) == sorted(want), f"step {index + 1}: other loss terms"
        assert got == pytest.approx(want, rel=REL, abs=0), f"step {index + 1}"
