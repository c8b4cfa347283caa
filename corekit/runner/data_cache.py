"""The data sets of a run, loaded once and kept on the device."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch

from corekit import recipe as rc
from corekit.data import BUILTIN_DATASETS, ImageSet, Loader, load_dataset

Datasets = Callable[[str], ImageSet]
"""Loads a data set by name: what ``compose`` and the probes take."""


class DataCache:
    """Datasets loaded once per run and moved to the device. ``loaders`` are the registered
    datasets (``Plugins.datasets()``); by default the core's."""

    def __init__(self, device: torch.device,
                 loaders: Mapping[str, Loader] = BUILTIN_DATASETS) -> None:
        self.device = device
        self.loaders = loaders
        self._sets: dict[str, ImageSet] = {}

    def __call__(self, name: str, subset: int | None = None, seed: int = 0) -> ImageSet:
        key = f"{name}|{subset}|{seed}"
        if key not in self._sets:
            data = load_dataset(name, loaders=self.loaders)
            if subset and subset > len(data):
                warnings.warn(f"data.subset = {subset} is more than the {len(data)} images of "
                              f"{data.name}: all of them are used", stacklevel=2)
            if subset:
                data = data.subset(subset, seed)
            self._sets[key] = data.to(self.device)
        return self._sets[key]


def stage_datasets(cache: DataCache, stage: rc.Stage) -> Datasets:
    """The data-set loader a stage composes with: ``name`` → the stage's subset of it."""
    def datasets(name: str) -> ImageSet:
        return cache(name, stage.data.subset, stage.train.seed)
    return datasets
