"""One training step as data: views, indices, epoch, state, and lazily computed outputs.

A loss asks the step for what it needs (``step.output("proj", view=1, branch="target")``);
the step computes it once, on first request, and caches it. So a loss that updates state in
the middle of the forward (DigPro's momentum groups) runs exactly where it sits in the loss
order, and outputs no loss reads are never computed.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from corekit.network import Network
from corekit.state import EMATarget, MemoryBank, PseudoLabels


@attrs.frozen
class Need:
    """Something a component reads from the step; the composer checks the recipe provides it.

    kinds: ``output`` (``name`` on ``branch``), ``labels`` (pseudo-labels of an E-step),
    ``bank`` (a memory bank), ``views`` (at least ``count`` views), ``reference`` (a second
    dataset).
    """

    kind: str
    name: str = ""
    branch: str = "online"
    count: int = 0

    @classmethod
    def output(cls, name: str, branch: str = "online") -> Need:
        return cls("output", name, branch)

    @classmethod
    def views(cls, count: int) -> Need:
        return cls("views", count=count)

    @classmethod
    def labels(cls) -> Need:
        return cls("labels")

    @classmethod
    def bank(cls) -> Need:
        return cls("bank")

    @classmethod
    def reference(cls) -> Need:
        return cls("reference")

    def describe(self) -> str:
        if self.kind == "output":
            return f"{self.branch}:{self.name}"
        if self.kind == "views":
            return f"{self.count} views"
        return self.kind


@attrs.define
class Model:
    """The trainable networks of a stage: the online network and an optional EMA target."""

    online: Network
    target: EMATarget | None = None


@attrs.define
class Step:
    """Everything a loss may read in one M-step."""

    model: Model
    views: list[torch.Tensor]
    indices: torch.Tensor
    epoch: int
    global_step: int
    epochs: int
    pseudo: PseudoLabels | None = None
    bank: MemoryBank | None = None
    reference: torch.Tensor | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
    _cache: dict[tuple[str, int], dict[str, torch.Tensor]] = attrs.field(factory=dict)

    def output(self, name: str, view: int = 0, branch: str = "online") -> torch.Tensor:
        """Part ``name`` of ``branch`` on view ``view`` (float32; target outputs carry no grad)."""
        cache = self._cache.setdefault((branch, view), {})
        if branch == "online":
            out = self.model.online.compute(name, self.views[view], cache)
        elif branch == "target":
            if self.model.target is None:
                raise KeyError("this recipe has no target branch")
            with torch.no_grad():
                out = self.model.target.network.compute(name, self.views[view], cache)
        else:
            raise KeyError(f"unknown branch {branch!r}; use 'online' or 'target'")
        return out.float()

    def labels(self) -> torch.Tensor:
        """The pseudo-labels of this batch's images, from the last E-step."""
        if self.pseudo is None:
            raise KeyError("this recipe has no E-step: add a [clusterer] section")
        return self.pseudo.labels[self.indices]

    @property
    def n_views(self) -> int:
        return len(self.views)
