"""The protocols plugin authors implement, and the check of each, run when a component is built.

Which protocol a kind's components must fit is the ``contract`` column of
``corekit.kinds.TABLE``. A factory that returns something that does not fit is a
``ComponentError`` at compose time naming the component and what is missing, not an
``AttributeError`` in the middle of training. The protocols are exported from ``corekit``
(``corekit.Loss``, ``corekit.Head``, ...) as the reference for plugin authors
(docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from corekit.components.clusterers import Clusterer
from corekit.components.samplers import Sampler
from corekit.components.schedules import Schedule
from corekit.errors import ComponentError
from corekit.kinds import TABLE
from corekit.needs import OUTPUT_KINDS, Need
from corekit.state.base import State

__all__ = ["CONTRACTS", "Augmentation", "Backbone", "Clusterer", "DatasetLabeler", "Head", "Loss",
           "Optimizer", "PseudoLabeler", "Sampler", "Schedule", "State", "check_contract"]

Optimizer = torch.optim.Optimizer
"""An optimizer factory returns a ``torch.optim.Optimizer`` (the class itself is the contract)."""


@runtime_checkable
class Backbone(Protocol):
    """``nn.Module`` mapping ``(B, C, H, W)`` images to ``(B, out_dim)`` features; ``produces``
    is optional (default ``"embedding"``)."""

    out_dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Head(Protocol):
    """``nn.Module`` mapping ``(B, in_dim)`` to ``(B, out_dim)``; ``produces`` is one of
    ``corekit.needs.OUTPUT_KINDS``."""

    out_dim: int
    produces: str

    def __call__(self, features: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Augmentation(Protocol):
    """``nn.Module`` mapping a float batch in [0, 1] ``(B, C, H, W)`` to one view
    ``(B, C, size, size)`` on the same device."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Loss(Protocol):
    """``loss(step) -> ()`` scalar tensor; ``needs()`` declares everything it reads."""

    def needs(self) -> list[Need]: ...
    def __call__(self, step: Any) -> torch.Tensor: ...


@runtime_checkable
class PseudoLabeler(Protocol):
    """``labeler(step) -> (labels (B,), mask (B,))``; ``needs()`` declares what it reads."""

    def needs(self) -> list[Need]: ...
    def __call__(self, step: Any) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class DatasetLabeler(Protocol):
    """``labeler.label(inputs) -> LabelRows`` on whole-set inputs, each (M, ...) over the same M
    images; ``reads`` maps each input name the labeler takes to the kind of output it reads
    (``"probs"``, ``"embedding"``, ``"any"``: ``corekit.needs.ACCEPTS``). An optional
    ``stacked_inputs`` names the inputs that may be a part of stacked heads, (M, H, K)."""

    reads: Mapping[str, str]

    def label(self, inputs: Mapping[str, torch.Tensor]) -> Any: ...


def _labeler(obj: Any) -> str | None:
    """A per-step ``PseudoLabeler`` or a ``DatasetLabeler``."""
    if isinstance(obj, DatasetLabeler) or isinstance(obj, PseudoLabeler):
        return None
    return ("must provide either needs() and __call__(step) -> (labels, mask) (per step) or "
            "reads and label(inputs) -> LabelRows (per data set)")


def _module_with_dim(obj: Any) -> str | None:
    if not isinstance(obj, nn.Module):
        return f"must be an nn.Module, got {type(obj).__name__}"
    if not isinstance(getattr(obj, "out_dim", None), int):
        return "must have an int `out_dim` attribute (its output width)"
    return None


def _produces(obj: Any, required: bool) -> str | None:
    produced = getattr(obj, "produces", None)
    if produced is None and not required:
        return None
    if produced not in OUTPUT_KINDS:
        return (f"must declare `produces` as one of {list(OUTPUT_KINDS)} "
                f"(what its output is), got {produced!r}")
    return None


def _backbone(obj: Any) -> str | None:
    return _module_with_dim(obj) or _produces(obj, required=False)


def _head(obj: Any) -> str | None:
    return _module_with_dim(obj) or _produces(obj, required=True)


def _augmentation(obj: Any) -> str | None:
    return None if isinstance(obj, nn.Module) else \
        f"must be an nn.Module (moved to the device), got {type(obj).__name__}"


def _protocol(protocol: type, what: str) -> Callable[[Any], str | None]:
    def check(obj: Any) -> str | None:
        return None if isinstance(obj, protocol) else f"must provide {what}"
    return check


def _state(obj: Any) -> str | None:
    return None if isinstance(obj, nn.Module) else \
        f"must be an nn.Module (its buffers are checkpointed), got {type(obj).__name__}"


def _optimizer(obj: Any) -> str | None:
    return None if isinstance(obj, Optimizer) else \
        f"must be a torch.optim.Optimizer, got {type(obj).__name__}"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "Backbone": _backbone,
    "Head": _head,
    "Augmentation": _augmentation,
    "Loss": _protocol(Loss, "needs() -> list[Need] and __call__(step) -> scalar tensor"),
    "PseudoLabeler": _labeler,
    "Clusterer": _protocol(Clusterer, "n_clusters and fit(features) -> ClusterResult"),
    "State": _state,
    "Schedule": _protocol(Schedule, "factor(step) -> float"),
    "Optimizer": _optimizer,
    "Sampler": _protocol(Sampler, "order(n, count, generator, states) -> indices"),
}
"""The check of each protocol above, by its name: what a built object lacks, or None."""

CONTRACTS: dict[str, Callable[[Any], str | None]] = {
    kind.name: _CHECKS[kind.contract] for kind in TABLE if kind.contract is not None}
"""The check of each kind the builder builds, read off the ``contract`` column of
``corekit.kinds.TABLE``."""


def check_contract(kind: str, obj: Any, where: str) -> None:
    """Raise a ComponentError when ``obj`` does not fit the protocol of ``kind``."""
    check = CONTRACTS.get(kind)
    problem = check(obj) if check else None
    if problem:
        raise ComponentError(f"{where}: this {kind} {problem}")
