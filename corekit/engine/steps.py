"""How many steps an epoch of a stage has, from the set it trains on."""

from __future__ import annotations

from collections.abc import Callable

from corekit import recipe as rc
from corekit.data import ImageSet
from corekit.engine.trainer import epoch_steps


def stage_steps(stage: rc.Stage, datasets: Callable[[str], ImageSet]) -> int:
    """Steps per epoch of ``stage`` on the set it trains on (``datasets`` loads a set by
    name)."""
    return epoch_steps(stage.train, len(datasets(stage.data.trained_on())))
