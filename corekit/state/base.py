"""The contract of a state type, checked when a ``[state.NAME]`` is built."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import nn

from corekit.errors import ComponentError


@runtime_checkable
class State(Protocol):
    """A state is an ``nn.Module``: its buffers and parameters are its checkpoint."""

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any: ...


def check_state(obj: Any, where: str) -> None:
    """A built state must be an ``nn.Module`` (checkpointed with the run)."""
    if not isinstance(obj, nn.Module):
        raise ComponentError(f"{where}: a state type must build an nn.Module (its buffers are "
                             f"checkpointed), got {type(obj).__name__}")
