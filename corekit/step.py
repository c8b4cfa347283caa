"""One training step as data: views, indices, epoch, named state, and lazily computed outputs.

A loss asks the step for what it needs (``step.output("proj", view=1, branch="target")``);
the step computes it once, on first request, and caches it per (branch, view, part). So a loss
that updates state in the middle of the forward (DigPro's momentum groups) runs exactly where
it sits in the loss order, and outputs no loss reads are never computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch

from corekit.errors import did_you_mean
from corekit.needs import Need
from corekit.network import Networks

__all__ = ["Need", "Step"]


@attrs.define
class Step:
    """Everything a loss may read in one M-step.

    ``model``: the stage's networks (online and branches); ``views``: V tensors (B, C, H, W);
    ``indices``: (B,) dataset indices; ``epoch`` 0-based; ``global_step`` 1-based; ``state``:
    the stage's named state; ``reference``: a batch of the reference set, when the recipe names
    one.
    """

    model: Networks
    views: list[torch.Tensor]
    indices: torch.Tensor
    epoch: int
    global_step: int
    epochs: int
    states: Mapping[str, Any] = attrs.field(factory=dict)
    reference: torch.Tensor | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
    _cache: dict[tuple[str, int], dict[str, torch.Tensor]] = attrs.field(factory=dict)

    def output(self, name: str, view: int = 0, branch: str = "online") -> torch.Tensor:
        """Part ``name`` of ``branch`` on view ``view`` (float32; only online outputs carry
        gradient)."""
        network = self.model.network(branch)
        cache = self._cache.setdefault((branch, view), {})
        if branch == "online":
            out = network.compute(name, self.views[view], cache)
        else:
            with torch.no_grad():
                out = network.compute(name, self.views[view], cache)
        return out.float()

    def prefill(self, name: str, view: int, output: torch.Tensor, branch: str = "online") -> None:
        """Give part ``name``'s output (B, D) on view ``view`` instead of computing it: the
        engine passes cached features of a frozen part (``corekit.feature_cache``), so the part
        never runs in this step. Parts that read ``name`` compute from ``output``."""
        self._cache.setdefault((branch, view), {})[name] = output

    def output_from(self, name: str, given: Mapping[str, torch.Tensor],
                    branch: str = "online") -> torch.Tensor:
        """Part ``name`` of ``branch`` computed from ``given`` outputs (B, D) of a part it reads,
        e.g. ``{"backbone": features}``, rather than from a view; not cached (float32; only
        online outputs carry gradient). Raises ``KeyError`` when ``given`` holds no part on
        the way to ``name``."""
        network = self.model.network(branch)
        chain = network.dependencies(name)
        if not any(part in given for part in chain):
            raise KeyError(f"output_from({name!r}): give the output of one of {chain}, "
                           f"got {sorted(given)}")
        nothing = torch.empty(0)  # never read: ``given`` stands for the image's way in
        with torch.set_grad_enabled(branch == "online" and torch.is_grad_enabled()):
            return network.compute(name, nothing, dict(given)).float()

    def state(self, name: str) -> Any:
        """The named state ``[state.<name>]`` of this stage."""
        if name not in self.states:
            raise KeyError(f"this stage has no state {name!r}; {did_you_mean(name, self.states)}")
        return self.states[name]

    def labels(self) -> torch.Tensor:
        """The pseudo-labels (B,) of this batch's images, from the last E-step."""
        if "pseudo" not in self.states:
            raise KeyError("this recipe has no E-step: add a [clusterer] section")
        return self.states["pseudo"].labels[self.indices]

    @property
    def n_views(self) -> int:
        return len(self.views)
