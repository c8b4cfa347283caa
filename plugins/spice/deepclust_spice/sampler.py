"""The order of a stage-2 epoch: the images the last E-step labelled, pass after pass (the
authors' code makes 8 passes over an E-step's selection before the next E-step)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from corekit import Need


@attrs.frozen
class LabelledPasses:
    """``[train] sampler = { type = "spice_labelled", targets = "estep" }``: shuffled passes
    over the images that have a row in the ``targets`` state (each once per pass, whatever
    its number of rows), as many as the epoch's ``count`` draws take; every image while the
    state is empty."""

    targets: str = "estep"

    def needs(self) -> list[Need]:
        return [Need.state(self.targets, "targets")]

    def order(self, n: int, count: int, generator: torch.Generator,
              states: Mapping[str, Any]) -> torch.Tensor:
        state = states[self.targets]
        images = torch.unique(state.rows().index.cpu()) if state.ready else torch.arange(n)
        if images.numel() == 0:
            images = torch.arange(n)
        rounds = max(math.ceil(count / images.numel()), 1)
        passes = [images[torch.randperm(images.numel(), generator=generator)]
                  for _ in range(rounds)]
        return torch.cat(passes)[:count]
