"""Loading a part's weights from a file: ``weights = "PATH"`` on any encoder or head."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from corekit.errors import RecipeError

_WRAPPERS = ("state_dict", "model", "module")
_PREFIXES = ("module.", "backbone.", "encoder.", "model.")


def read_weights(path: Path, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, or of a torch file read with ``weights_only=True``
    (a file that holds pickled code is refused, never run)."""
    if not path.is_file():
        raise RecipeError(f"{where}: weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise RecipeError(f"{where}: {path} is not a readable safetensors file ({exc})") \
                from None
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RecipeError(f"{where}: {path} holds more than tensors (pickled code is refused): "
                          f"{str(exc).splitlines()[0]}") from None
    except Exception as exc:
        raise RecipeError(f"{where}: {path} cannot be read as a torch file ({exc})") from None
    for key in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RecipeError(f"{where}: {path} is not a state dict of tensors")
    return state


def _strip(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Drop one common wrapper prefix (``module.``, ``backbone.``, ...) when that makes the
    keys fit."""
    for prefix in _PREFIXES:
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if stripped and len(expected & set(stripped)) > len(expected & set(state)):
            return stripped
    return state


def load_weights(module: nn.Module, path: Path, where: str) -> None:
    """Load ``path`` into ``module``: every tensor the module has must be in the file with its
    shape; extra tensors (a classifier's) are ignored with a warning."""
    expected = module.state_dict()
    state = _strip(read_weights(path, where), set(expected))
    missing = [k for k in expected if k not in state]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or wrong:
        first = (missing or wrong)[0]
        raise RecipeError(f"{where}: {path} does not fit this part: {len(missing)} tensor(s) "
                          f"missing and {len(wrong)} of another shape (e.g. {first!r}); was it "
                          "saved from the same architecture and options?")
    extra = [k for k in state if k not in expected]
    if extra:
        warnings.warn(f"{where}: {len(extra)} tensor(s) of {path} are not used "
                      f"(e.g. {extra[0]!r})", stacklevel=2)
    module.load_state_dict({k: state[k] for k in expected})
