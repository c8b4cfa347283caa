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
from corekit.network import Network
from corekit.state import Branch

__all__ = ["Model", "Need", "Step"]


@attrs.define
class Model:
    """The networks of a stage: the online network and its branches (every EMA state, by its
    state name; ``[model.target]`` is the branch ``target``)."""

    online: Network
    branches: dict[str, Branch] = attrs.field(factory=dict)

    @property
    def target(self) -> Branch | None:
        """The ``target`` branch, if the stage has one."""
        return self.branches.get("target")

    def network(self, branch: str) -> Network:
        """The network of ``branch`` (``online`` or an EMA state's name)."""
        if branch == "online":
            return self.online
        if branch not in self.branches:
            raise KeyError(f"this stage has no branch {branch!r}; "
                           f"{did_you_mean(branch, ['online', *self.branches])}")
        return self.branches[branch].network


@attrs.define
class Step:
    """Everything a loss may read in one M-step.

    ``views``: V tensors (B, C, H, W); ``indices``: (B,) dataset indices; ``epoch`` 0-based;
    ``global_step`` 1-based; ``state``: the stage's named state; ``reference``: a batch of the
    reference set, when the recipe names one.
    """

    model: Model
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
