"""ProPos's loss values against those recorded earlier: the core must not change what
ProPos computes (``corekit.testing.LossRegression`` says what is probed and recorded)."""

from __future__ import annotations

from pathlib import Path

from corekit.testing import LossRegression

REGRESSION = LossRegression("propos", "propos", Path(__file__).parent / "data")


def test_losses_on_fixed_views_match_c9554c8() -> None:
    REGRESSION.check("fixed_views")


def test_losses_of_three_train_steps_match_the_batched_views_record() -> None:
    REGRESSION.check("train_steps")
