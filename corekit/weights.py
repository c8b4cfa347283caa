"""Loading a part's weights from a file: ``weights = "PATH"`` on any encoder or head.

A file whose tensor names differ from the part's (a torchvision, timm or foreign naming of the
same network) loads by order when every tensor's shape matches in order; a 3-channel stem
loads into a 1-channel part by summing its RGB filters (``adapt_stem``). Each says so in one
printed line."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from corekit.errors import RecipeError

_WRAPPERS = ("state_dict", "model", "module")
_PREFIXES = ("module.", "backbone.", "encoder.", "model.")
_COUNTER = "num_batches_tracked"  # a BatchNorm step counter: not a weight, some files lack it
_said: set[str] = set()


def note(message: str) -> None:
    """Print ``message`` once per process (a network is built more than once per run)."""
    if message not in _said:
        _said.add(message)
        print(message, flush=True)


def adapt_stem(weight: torch.Tensor, in_channels: int, where: str) -> torch.Tensor:
    """A 3-channel conv weight O×3×k×k for ``in_channels`` inputs: O×1×k×k by summing the RGB
    filters (a grey image seen as three equal channels gives the same response)."""
    if in_channels != 1 or weight.dim() != 4 or weight.shape[1] != 3:
        raise RecipeError(f"{where}: a {weight.shape[1]}-channel stem cannot be adapted to "
                          f"{in_channels}-channel images; give 1-channel (grey) or RGB images")
    return weight.sum(dim=1, keepdim=True)


def read_weights(path: Path, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, or of a torch file read with ``weights_only=True``
    (a file that holds pickled code is refused, never run)."""
    if path.is_dir():
        raise RecipeError(f"{where}: {path} is a folder, not a weights file; name the "
                          ".safetensors or torch file inside it")
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


def _fits(have: torch.Tensor, want: torch.Tensor) -> bool:
    """Same shape, or a 3-channel stem for a 1-channel one (``adapt_stem``)."""
    return have.shape == want.shape or (
        have.dim() == 4 and have.shape[1] == 3 and want.shape[1] == 1
        and have.shape[:1] + have.shape[2:] == want.shape[:1] + want.shape[2:])


def _by_order(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path,
              where: str) -> dict[str, torch.Tensor]:
    """``state`` renamed to ``expected``'s names by position (BatchNorm step counters left
    out on both sides): the file's first tensors must have the part's shapes in order, and
    only tensors past the part's last (a classifier's) may be left over."""
    have = [(k, v) for k, v in state.items() if not k.endswith(_COUNTER)]
    want = [k for k in expected if not k.endswith(_COUNTER)]
    if len(have) < len(want):
        raise RecipeError(f"{where}: {path} does not fit this part: its names differ and it "
                          f"has {len(have)} tensors for the part's {len(want)}; was it saved "
                          "from the same architecture?")
    for i, (name, (key, value)) in enumerate(zip(want, have, strict=False)):
        if not _fits(value, expected[name]):
            raise RecipeError(
                f"{where}: {path} does not fit this part: its names differ and, in order, "
                f"tensor {i} ({key!r}, {tuple(value.shape)}) cannot be {name!r} "
                f"({tuple(expected[name].shape)}), so mapping by order is ambiguous; save the "
                "weights with this part's names (the part's state_dict keys)")
    mapped = {name: value for name, (_, value) in zip(want, have, strict=False)}
    left = len(have) - len(want)
    note(f"{where}: {path.name}'s tensor names differ from the part's; mapped {len(want)} "
         f"tensors by order (every shape matches){f', {left} left over unused' if left else ''}")
    return {**{k: v for k, v in expected.items() if k.endswith(_COUNTER)}, **mapped}


def _adapt_stems(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                 path: Path, where: str) -> dict[str, torch.Tensor]:
    """``state`` with each 3-channel stem that the part has as 1-channel summed to 1."""
    out = dict(state)
    for key, want in expected.items():
        have = state.get(key)
        if have is not None and have.shape != want.shape and _fits(have, want):
            out[key] = adapt_stem(have, 1, where)
            note(f"{where}: {path.name} has an RGB stem and the images are grey; "
                 f"summed its 3 input filters into 1 ({key})")
    return out


def load_weights(module: nn.Module, path: Path, where: str) -> None:
    """Load ``path`` into ``module``: every tensor the module has must be in the file with its
    shape (by name, or else by order, see ``_by_order``); extra tensors (a classifier's) are
    ignored with a printed line."""
    expected = module.state_dict()
    state = _strip(read_weights(path, where), set(expected))
    missing = [k for k in expected if k not in state]
    if missing:
        state = _by_order(state, expected, path, where)
    wrong = [k for k in expected if not _fits(state[k], expected[k])]
    if wrong:
        raise RecipeError(f"{where}: {path} does not fit this part: {len(wrong)} tensor(s) "
                          f"of another shape (e.g. {wrong[0]!r}: {tuple(state[wrong[0]].shape)} "
                          f"in the file, {tuple(expected[wrong[0]].shape)} in the part); was "
                          "it saved from the same architecture and options?")
    state = _adapt_stems(state, expected, path, where)
    extra = [k for k in state if k not in expected]
    if extra:
        note(f"{where}: {len(extra)} tensor(s) of {path.name} are not used "
             f"(e.g. {extra[0]!r}, a classifier's?)")
    module.load_state_dict({k: state[k] for k in expected})
