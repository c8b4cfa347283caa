"""How many steps an epoch of a stage has, from the set it trains on."""

from __future__ import annotations

from collections.abc import Callable

from corekit import recipe as rc
from corekit.data import ImageSet
from corekit.engine.trainer import steps_per_epoch


def stage_steps(stage: rc.Stage, datasets: Callable[[str], ImageSet]) -> int:
    """Steps per epoch of ``stage`` on the set it trains on (``datasets`` loads a set by
    name)."""
    train_set = datasets(stage.data.trained_on())
    return steps_per_epoch(len(train_set), stage.train.batch_size, stage.train.drop_last,
                           stage.train.steps_per_epoch)
