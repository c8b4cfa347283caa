"""What a component reads from a step (``Need``) and how the composer checks it.

Every component that reads the step declares ``needs() -> list[Need]``. Before anything trains,
the composer checks every need of every component of every stage against what the recipe
builds and reports all unmet needs in one message, each with the line to add.

Need kinds are a registry kind like any other (``register_need_kinds``): the core registers
``output``, ``views``, ``labels``, ``state``, ``reference``, ``targets`` and ``selected``; a
plugin that adds a state type with its own requirements registers a checker for a new kind, and
the composer checks it without being edited. An undeclared kind is an error, never silently
accepted.

Outputs are typed: every encoder and head declares what it ``produces`` (an ``OutputKind``),
and an ``output`` need says what it ``reads``. A loss that reads an embedding from a head that
produces probabilities is a compose-time error naming both ends. A head of H stacked heads
(``stack = H``, output ``(B, H, K)``) is read only by a need that accepts a stack
(``Need.output(..., stack=True)``); one of its heads is read through a state that selects it
(a ``selected`` need, ``eval.assign = "head:PART@STATE"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import attrs

from corekit.errors import did_you_mean
from corekit.views import ViewName, missing_view, view_key

if TYPE_CHECKING:
    from corekit.network import Network
    from corekit.recipe import Stage

OutputKind = Literal["embedding", "unit", "logits", "probs"]
"""What a part produces: ``embedding`` (B×D features), ``unit`` (B×D rows of unit L2 norm),
``logits`` (B×K unnormalised scores), ``probs`` (B×K rows on the simplex)."""

ReadKind = Literal["embedding", "unit", "logits", "probs", "scores", "any"]
"""What a need reads. ``embedding`` accepts ``embedding`` and ``unit`` (a unit vector is an
embedding); ``scores`` accepts ``logits`` and ``probs``; ``any`` accepts every kind."""

OUTPUT_KINDS: tuple[str, ...] = ("embedding", "unit", "logits", "probs")
ACCEPTS: dict[str, frozenset[str]] = {
    "embedding": frozenset({"embedding", "unit"}),
    "unit": frozenset({"unit"}),
    "logits": frozenset({"logits"}),
    "probs": frozenset({"probs"}),
    "scores": frozenset({"logits", "probs"}),
    "any": frozenset(OUTPUT_KINDS),
}


@attrs.frozen
class Need:
    """Something a component reads from the step.

    ``kind`` names a registered need kind. The core's kinds and their fields:
    ``output`` (part ``name`` on ``branch``, read as ``reads``), ``views`` (at least ``count``
    views), ``labels`` (E-step pseudo-labels), ``state`` (a ``[state.<name>]`` of ``type``),
    ``reference`` (a second dataset), ``targets`` (``step.targets(name)``), ``selected`` (the
    head that state ``branch`` selects among the stacked part ``name``). An ``output`` need
    with ``stack`` accepts a part of stacked heads, ``(B, H, K)``; without, such a part is
    refused.
    """

    kind: str
    name: str = ""
    branch: str = "online"
    count: int = 0
    reads: ReadKind = "embedding"
    type: str = ""
    view_names: tuple[ViewName, ...] = ()
    stack: bool = False

    @classmethod
    def output(cls, name: str, branch: str = "online", reads: ReadKind = "embedding",
               stack: bool = False) -> Need:
        """Part ``name`` of ``branch`` read as ``reads``; ``stack``: also a part of stacked
        heads, ``(B, H, K)``."""
        return cls("output", name, branch, reads=reads, stack=stack)

    @classmethod
    def selected(cls, part: str, state: str) -> Need:
        """The head that state ``state`` selects among the stacked heads of part ``part``."""
        return cls("selected", part, state)

    @classmethod
    def views(cls, which: int | Sequence[ViewName]) -> Need:
        """At least ``which`` views (a count), or each view of ``which`` (names, or numbers as
        positions: ``corekit.views.view_key``)."""
        if isinstance(which, int):
            return cls("views", count=which)
        return cls("views", view_names=tuple(which))

    @classmethod
    def labels(cls) -> Need:
        return cls("labels")

    @classmethod
    def state(cls, name: str, type: str = "") -> Need:  # noqa: A002 - the recipe key is `type`
        return cls("state", name, type=type)

    @classmethod
    def reference(cls) -> Need:
        return cls("reference")

    @classmethod
    def stream(cls, name: str) -> Need:
        """The batch stream ``name`` of ``train.streams`` (``step.stream(name)``)."""
        return cls("stream", name)

    @classmethod
    def targets(cls, name: str) -> Need:
        """Targets read as ``step.targets(name)``: a per-step labeler ``[pseudo_labeler.name]``
        or a ``targets`` state ``[state.name]``."""
        return cls("targets", name)

    def describe(self) -> str:
        if self.kind == "output":
            return f"{self.branch}:{self.name} ({self.reads}{', stacked' if self.stack else ''})"
        if self.kind == "selected":
            return f"{self.name}@{self.branch}"
        if self.kind == "views":
            return f"views {list(self.view_names)}" if self.view_names else f"{self.count} views"
        if self.kind == "state":
            return f"state {self.name!r}" + (f" of type {self.type!r}" if self.type else "")
        return self.kind


@attrs.frozen
class NeedContext:
    """What a need checker may look at: the stage's recipe, its built network, the branches
    (``online`` and every EMA state), the named state with its registered types, and whether an
    E-step exists."""

    stage: Stage
    network: Network
    branches: Mapping[str, Network]
    state: Mapping[str, Any]
    state_types: Mapping[str, str]
    has_estep: bool


class NeedCheck(Protocol):
    """A need kind's checker: ``None`` when the need is met, else what to add to the recipe."""

    def __call__(self, need: Need, ctx: NeedContext) -> str | None: ...


def check_output(need: Need, ctx: NeedContext) -> str | None:
    """A part of the right kind on an existing branch."""
    if need.branch not in ctx.branches:
        if need.branch == "target":
            parts = ctx.network.dependencies(need.name) if need.name in ctx.network.names() \
                else ["backbone", need.name]
            return f"needs a target branch: add [model.target] with parts = {parts}"
        return (f"reads branch {need.branch!r}, which this stage does not have; branches: "
                f"{sorted(ctx.branches)} ({did_you_mean(need.branch, ctx.branches)})")
    branch = ctx.branches[need.branch]
    if need.name not in branch.names():
        if need.branch != "online" and need.name in ctx.network.names():
            return (f"reads {need.branch}:{need.name}: add {need.name!r} to the parts of "
                    f"the {need.branch!r} EMA (model.target.parts for the target)")
        return (f"reads {need.describe()}, but the model has no part {need.name!r}: add "
                f"[model.heads.{need.name}] or pass the head name the recipe uses; "
                f"{did_you_mean(need.name, ctx.network.names())}")
    if need.reads not in ACCEPTS:
        return f"declares reads = {need.reads!r}; valid: {sorted(ACCEPTS)}"
    produced = branch.produces(need.name)
    if produced not in ACCEPTS[need.reads]:
        return (f"reads {need.branch}:{need.name} as {need.reads}, but part {need.name!r} "
                f"({branch.describe_part(need.name)}) produces {produced}: read a part "
                f"that produces {' or '.join(sorted(ACCEPTS[need.reads]))}")
    return _stack_problem(need, branch)


def _stack_problem(need: Need, branch: Network) -> str | None:
    """A part of stacked heads read by a need that takes one output."""
    stack = branch.stack(need.name)
    if stack is None or need.stack:
        return None
    return (f"reads {need.branch}:{need.name} as one output (B, K), but part {need.name!r} "
            f"({branch.describe_part(need.name)}) stacks {stack} heads, (B, {stack}, K): read "
            "it with a component that accepts a stack, or read the one head a [state.NAME] of "
            f"type 'selection' keeps (eval.assign = 'head:{need.name}@NAME')")


@runtime_checkable
class Selects(Protocol):
    """A state that keeps one head of the stacked part ``part`` (``corekit.state.Selection``
    and its subclasses); its ``network`` is the branch that reads it."""

    part: str
    network: Any


def check_selected(need: Need, ctx: NeedContext) -> str | None:
    """State ``need.branch`` selects among the heads of part ``need.name``, which are scores."""
    selections = sorted(n for n, s in ctx.state.items() if isinstance(s, Selects))
    found = ctx.state.get(need.branch)
    if not isinstance(found, Selects):
        what = (f"is a {ctx.state_types.get(need.branch)!r} state, which selects no head"
                if need.branch in ctx.state else "is no state of this stage")
        near = f"name a state that selects one ({did_you_mean(need.branch, selections)})" \
            if selections else \
            f"add [state.{need.branch}] with type = 'selection' and part = {need.name!r}"
        return f"reads the head that {need.branch!r} selects, but {need.branch!r} {what}; {near}"
    if found.part != need.name:
        return (f"reads {need.describe()}, but state {need.branch!r} selects among the heads "
                f"of {found.part!r}: read '{found.part}@{need.branch}'")
    produced = ctx.network.produces(need.name)
    if produced not in ACCEPTS["scores"]:
        return (f"reads {need.describe()} as scores, but part {need.name!r} produces "
                f"{produced}: select among heads that produce logits or probs")
    return None


def check_views(need: Need, ctx: NeedContext) -> str | None:
    """Enough views, and every view named (``[augment.views.NAME]`` or a number in range)."""
    names = ctx.stage.augment.view_names()
    if len(names) < need.count:
        named = not isinstance(ctx.stage.augment.views, int)
        fix = "name that many [augment.views.NAME] tables" if named else \
            f"set augment.views = {need.count}"
        return f"needs {need.count} views: {fix}"
    for view in need.view_names:
        try:
            view_key(names, view)
        except KeyError:
            return f"reads view {view!r}, but {missing_view(names, view)}"
    return None


def check_labels(need: Need, ctx: NeedContext) -> str | None:
    if not ctx.has_estep:
        return "reads pseudo-labels: add a [clusterer] section (the E-step)"
    return None


def check_state(need: Need, ctx: NeedContext) -> str | None:
    if need.name not in ctx.state:
        example = need.type or "<type>"
        return (f"reads {need.describe()}: add [state.{need.name}] with type = {example!r}; "
                f"{did_you_mean(need.name, ctx.state)}")
    if need.type and ctx.state_types.get(need.name) != need.type:
        return (f"reads {need.describe()}, but [state.{need.name}] is of type "
                f"{ctx.state_types.get(need.name)!r}")
    return None


def check_stream(need: Need, ctx: NeedContext) -> str | None:
    """A stream of that name in ``train.streams`` (``main`` when it names none)."""
    streams = list(ctx.stage.train.streams) or ["main"]
    if need.name in streams:
        return None
    return (f"reads stream {need.name!r}, but train.streams has {streams}: add "
            f"[train.streams.{need.name}] with its batch_size; {did_you_mean(need.name, streams)}")


def check_targets(need: Need, ctx: NeedContext) -> str | None:
    """A per-step labeler or a ``targets`` state of that name."""
    labeler = ctx.stage.pseudo_labeler.get(need.name)
    if labeler is not None and labeler.writes is not None:
        return (f"reads targets {need.name!r}, a labeler that writes state {labeler.writes!r}: "
                f"read targets = {labeler.writes!r}")
    if labeler is not None or ctx.state_types.get(need.name) == "targets":
        return None
    found = [*ctx.stage.pseudo_labeler, *(n for n, t in ctx.state_types.items()
                                          if t == "targets")]
    return (f"reads targets {need.name!r}: add [pseudo_labeler.{need.name}] (a per-step "
            f"labeler) or [state.{need.name}] with type = 'targets' written by a labeler; "
            f"{did_you_mean(need.name, found)}")


def check_reference(need: Need, ctx: NeedContext) -> str | None:
    if ctx.stage.data.reference is None:
        return "reads the reference set: set data.reference"
    return None


CORE_NEED_KINDS: dict[str, Callable[[Need, NeedContext], str | None]] = {
    "output": check_output,
    "views": check_views,
    "labels": check_labels,
    "state": check_state,
    "reference": check_reference,
    "targets": check_targets,
    "selected": check_selected,
    "stream": check_stream,
}
