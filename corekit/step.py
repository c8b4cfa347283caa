"""One training step as data: views, indices, epoch, named state, and lazily computed outputs.

A loss asks the step for what it needs (``step.output("proj", view=1, branch="target")``);
the step computes it once, on first request, and caches it per (branch, view, part). So a loss
that updates state in the middle of the forward (DigPro's momentum groups) runs exactly where
it sits in the loss order, and outputs no loss reads are never computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

from corekit.errors import did_you_mean
from corekit.needs import Need
from corekit.network import Networks
from corekit.state.targets import UNLABELLED, BatchTargets
from corekit.views import ViewName, view_key

__all__ = ["Need", "Step"]


def named_views(views: Mapping[ViewName, torch.Tensor] | Sequence[torch.Tensor]
                ) -> dict[ViewName, torch.Tensor]:
    """The views by name, in order: a mapping as it is, a list numbered 0..V-1."""
    return dict(views) if isinstance(views, Mapping) else dict(enumerate(views))


MAIN = "main"
"""The one stream of a step when ``train.streams`` names none."""


@attrs.define
class ConcatForward:
    """One forward over several (stream, view) batches together (``train.concat``): the
    members' images are concatenated, each part runs once on all of them (train-mode
    BatchNorm sees one batch), and each member reads its own rows of the output."""

    model: Networks
    members: list[tuple[str, ViewName]]
    images: list[torch.Tensor]
    _joined: torch.Tensor | None = None
    _cache: dict[str, dict[str, torch.Tensor]] = attrs.field(factory=dict)

    def has(self, stream: str, view: ViewName) -> bool:
        return (stream, view) in self.members

    def output(self, name: str, stream: str, view: ViewName, branch: str) -> torch.Tensor:
        """Part ``name`` of ``branch`` on member (``stream``, ``view``): its rows (B, ...) of
        the one forward over every member (computed once per branch and part)."""
        if self._joined is None:  # the members' images, concatenated once per step
            self._joined = torch.cat(self.images)
        cache = self._cache.setdefault(branch, {})
        with torch.set_grad_enabled(branch == "online" and torch.is_grad_enabled()):
            whole = self.model.network(branch).compute(name, self._joined, cache)
        sizes = [len(x) for x in self.images]
        at = self.members.index((stream, view))
        start = sum(sizes[:at])
        return whole[start:start + sizes[at]]


@attrs.define
class Step:
    """Everything a loss may read in one M-step.

    ``model``: the stage's networks (online and branches); ``views``: view name -> (B, C, H, W)
    tensor in the stage's view order (``corekit.views``; a list is numbered 0..V-1);
    ``indices``: (B,) dataset indices; ``epoch`` 0-based; ``global_step`` 1-based; ``state``:
    the stage's named state; ``reference``: a batch of the reference set, when the recipe names
    one; ``labelers``: the stage's per-step labelers by name (read through ``targets``).

    With ``train.streams`` the step is the first stream's, ``name`` its stream, and
    ``stream(NAME)`` gives every stream's step (``streams``); ``rows`` holds the targets of a
    stream that walks a targets state's rows, by state name; ``concat`` the one forward that
    serves the (stream, view) batches of ``train.concat``.
    """

    model: Networks
    views: dict[ViewName, torch.Tensor] = attrs.field(converter=named_views)
    indices: torch.Tensor
    epoch: int
    global_step: int
    epochs: int
    states: Mapping[str, Any] = attrs.field(factory=dict)
    reference: torch.Tensor | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
    labelers: Mapping[str, Any] = attrs.field(factory=dict)
    name: str = MAIN
    streams: dict[str, Step] = attrs.field(factory=dict)
    rows: dict[str, BatchTargets] = attrs.field(factory=dict)
    concat: ConcatForward | None = None
    _cache: dict[tuple[str, ViewName], dict[str, torch.Tensor]] = attrs.field(factory=dict)
    _targets: dict[str, BatchTargets] = attrs.field(factory=dict)

    def stream(self, name: str) -> Step:
        """The step of stream ``name`` (``train.streams``): its own images, views, indices and
        outputs, with the same model, state and labelers. ``"main"`` is the step itself when
        the recipe names no stream."""
        if name == self.name:
            return self
        if name not in self.streams:
            known = list(self.streams) or [self.name]
            raise KeyError(f"this stage has no stream {name!r}; {did_you_mean(name, known)}")
        return self.streams[name]

    def output(self, name: str, view: ViewName = 0, branch: str = "online") -> torch.Tensor:
        """Part ``name`` of ``branch`` on view ``view``, a name (``"strong"``) or a position
        (float32; only online outputs carry gradient). Cached per (branch, view name, part):
        view 0 and the first view's name read one output."""
        network = self.model.network(branch)
        key = view_key(list(self.views), view)
        if self.concat is not None and self.concat.has(self.name, key):
            return self.concat.output(name, self.name, key, branch).float()
        cache = self._cache.setdefault((branch, key), {})
        if branch == "online":
            out = network.compute(name, self.views[key], cache)
        else:
            with torch.no_grad():
                out = network.compute(name, self.views[key], cache)
        return out.float()

    def prefill(self, name: str, view: ViewName, output: torch.Tensor,
                branch: str = "online") -> None:
        """Give part ``name``'s output (B, D) on view ``view`` instead of computing it: the
        engine passes cached features of a frozen part (``corekit.feature_cache``), so the part
        never runs in this step. Parts that read ``name`` compute from ``output``."""
        self._cache.setdefault((branch, view_key(list(self.views), view)), {})[name] = output

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

    def produces(self, name: str, branch: str = "online") -> str:
        """What part ``name`` of ``branch`` outputs: ``"probs"``, ``"logits"``, ``"embedding"``,
        ... (``corekit.needs.OUTPUT_KINDS``)."""
        return self.model.network(branch).produces(name)

    def targets(self, name: str) -> BatchTargets:
        """The targets of this batch's images: those the per-step labeler ``[pseudo_labeler.
        <name>]`` gives on this step (computed once per step), or the rows of the ``targets``
        state ``[state.<name>]`` a dataset-level labeler wrote; labels (B,), mask (B,),
        weight (B,). On a stream that walks the rows of state ``name``, its rows' own labels
        and weights (an image with two rows in the batch has two labels)."""
        if name in self.rows:
            return self.rows[name]
        if name in self.labelers:
            if name not in self._targets:
                labels, mask = self.labelers[name](self)
                self._targets[name] = BatchTargets(torch.where(mask, labels, UNLABELLED), mask,
                                                   mask.float())
            return self._targets[name]
        return self.state(name).of(self.indices)

    def labels(self) -> torch.Tensor:
        """The pseudo-labels (B,) of this batch's images, from the last E-step."""
        if "pseudo" not in self.states:
            raise KeyError("this recipe has no E-step: add a [clusterer] section")
        return self.states["pseudo"].labels[self.indices]

    @property
    def n_views(self) -> int:
        return len(self.views)
