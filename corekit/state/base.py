"""The contract of a state type, checked when a ``[state.NAME]`` is built."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import nn

from corekit.errors import ComponentError

if TYPE_CHECKING:
    from corekit.network import Network


@runtime_checkable
class State(Protocol):
    """A state is an ``nn.Module``: its buffers and parameters are its checkpoint."""

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any: ...


@runtime_checkable
class Branch(Protocol):
    """A state that is a second branch of the model (an EMA target): ``step.output(name,
    view, branch=NAME)`` runs its ``network`` without gradient."""

    network: Network


def source_parts(source: str) -> tuple[str, str]:
    """``"target:proj"`` → ("target", "proj"); a bare name is on the online branch."""
    branch, name = source.split(":", 1) if ":" in source else ("online", source)
    return branch, name


def check_state(obj: Any, where: str) -> None:
    """A built state must be an ``nn.Module`` (checkpointed with the run)."""
    if not isinstance(obj, nn.Module):
        raise ComponentError(f"{where}: a state type must build an nn.Module (its buffers are "
                             f"checkpointed), got {type(obj).__name__}")
