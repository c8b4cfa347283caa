"""The declared lifecycle of a training stage: one protocol, one dispatch, checked when built.

Any component (a loss, a state, a head or encoder, the clusterer, a pseudo-labeler, the sampler)
may define any of these methods; the engine calls them, in recipe order, at these points:

==========================  =========================  =============================================
hook                        argument                   when
==========================  =========================  =============================================
``on_stage_start``          ``StageContext``           once, after the stage is built, before a
                                                       resumed checkpoint is loaded
``on_epoch_start``          ``StageContext``           each epoch, before its E-step
``on_step_start``           ``Step``                   each step, before any loss runs
``before_backward``         ``Step``                   after every loss of the step, before backward
``after_optimizer_step``    ``Step``                   after the optimizer step (EMA, banks, queues)
``on_epoch_end``            ``StageContext``           each epoch, after its last step, before the
                                                       evaluation; ``ctx.features`` extracts
                                                       whole-set outputs of any part on any branch
``on_stage_end``            ``StageContext``           once, after the last epoch, before the
                                                       stage's outputs are saved
==========================  =========================  =============================================

A method whose name looks like a hook but is not one (``on_epoch_begin``) or that cannot take
its one argument is a ``ComponentError`` when the stage is built, not a hook that silently
never fires.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import torch

from corekit.errors import ComponentError, did_you_mean

if TYPE_CHECKING:
    from corekit.network import Networks
    from corekit.step import Step

STAGE_HOOKS: tuple[str, ...] = ("on_stage_start", "on_epoch_start", "on_epoch_end",
                                "on_stage_end")
STEP_HOOKS: tuple[str, ...] = ("on_step_start", "before_backward", "after_optimizer_step")
HOOKS: tuple[str, ...] = ("on_stage_start", "on_epoch_start", "on_step_start", "before_backward",
                          "after_optimizer_step", "on_epoch_end", "on_stage_end")
_HOOK_PREFIXES = ("on_", "before_", "after_")


@attrs.define
class StageContext:
    """What stage- and epoch-level hooks see.

    ``epoch`` is 0-based (the epoch about to run in ``on_epoch_start``, the one just run in
    ``on_epoch_end``); ``features(spec)`` returns ``(N, D)`` outputs of part ``spec``
    (``"branch:part"``, e.g. ``"target:proj"``) for every training image, eval transform, eval
    mode; ``out_dir`` is the stage's output folder, where a component may save files that the
    next stage or the user reads.
    """

    stage: str
    epochs: int
    steps_per_epoch: int
    model: Networks
    state: dict[str, Any]
    features: Callable[[str], torch.Tensor]
    out_dir: Path
    log: Callable[[str], None]
    epoch: int = 0
    global_step: int = 0


@runtime_checkable
class Lifecycle(Protocol):
    """The full set of hooks. A component implements any subset; none is required."""

    def on_stage_start(self, ctx: StageContext) -> None: ...
    def on_epoch_start(self, ctx: StageContext) -> None: ...
    def on_step_start(self, step: Step) -> None: ...
    def before_backward(self, step: Step) -> None: ...
    def after_optimizer_step(self, step: Step) -> None: ...
    def on_epoch_end(self, ctx: StageContext) -> None: ...
    def on_stage_end(self, ctx: StageContext) -> None: ...


def check_hooks(component: Any, where: str) -> None:
    """Raise a ComponentError for a misspelt hook or one that cannot take its argument."""
    for name in dir(type(component)):
        if name.startswith("_") or not name.startswith(_HOOK_PREFIXES):
            continue
        method = getattr(component, name, None)
        if not callable(method):
            continue
        if name not in HOOKS:
            near = did_you_mean(name, HOOKS)
            if near.startswith("did you mean"):
                raise ComponentError(f"{where}: method {name!r} is not a lifecycle hook and "
                                     f"would never be called; {near}")
            continue
        try:
            inspect.signature(method).bind(None)
        except TypeError:
            raise ComponentError(f"{where}: lifecycle hook {name}() must take exactly one "
                                 f"argument (the {_argument(name)})") from None
        except ValueError:
            continue


def _argument(hook: str) -> str:
    return "Step" if hook in STEP_HOOKS else "StageContext"


@attrs.define
class Hooks:
    """The components of one stage, in recipe order, and the hooks each defines."""

    components: list[tuple[str, Any]] = attrs.field(factory=list)

    def add(self, where: str, component: Any) -> None:
        if component is None:
            return
        check_hooks(component, where)
        if not any(c is component for _, c in self.components):
            self.components.append((where, component))

    def extend(self, pairs: Iterable[tuple[str, Any]]) -> None:
        for where, component in pairs:
            self.add(where, component)

    def of(self, hook: str) -> list[Callable[[Any], None]]:
        """The bound ``hook`` methods, in recipe order."""
        if hook not in HOOKS:
            raise KeyError(f"unknown lifecycle hook {hook!r}; {did_you_mean(hook, HOOKS)}")
        found = (getattr(c, hook, None) for _, c in self.components)
        return [m for m in found if callable(m)]

    def fire(self, hook: str, argument: Any) -> None:
        for method in self.of(hook):
            method(argument)
