"""Stage hand-off: what a finished stage saves and how a later stage starts from it.

A stage's outputs are the weights of every part it owns and every named state with its
registered type (``StageOutputs``), saved as ``RUN/stages/NAME/outputs.pt``. The next stage
carries the parts with the same names (``fresh``/``carry`` narrow that), and any stage may start
a part or a state from an earlier stage by name: ``init_from = "STAGE:PART"``; a state starts
only from one of its own type and shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from corekit import checkpoint_io as checkpoint
from corekit import recipe as rc
from corekit.errors import ComponentError, RecipeError, did_you_mean
from corekit.network import Network

Tensors = dict[str, torch.Tensor]
OUTPUTS_FILE = "outputs.pt"


@attrs.define
class StageOutputs:
    """Per-part weights and per-name state of a stage after ``epochs`` epochs, on the CPU, and
    what its images were (``data``: channels, size, mean, std, n_clusters, n_images), so that
    new images can be prepared the same way (``deepclust predict``). ``state_types`` holds each
    state's registered type name (empty in outputs saved before it was recorded)."""

    stage: str
    parts: dict[str, Tensors]
    state: dict[str, Tensors]
    epochs: int = 0
    data: dict[str, Any] = attrs.field(factory=dict)
    state_types: dict[str, str] = attrs.field(factory=dict)

    @classmethod
    def of(cls, stage: str, network: Network, state: Mapping[str, nn.Module],
           epochs: int = 0, data: dict[str, Any] | None = None,
           state_types: Mapping[str, str] | None = None) -> StageOutputs:
        def cpu(module: nn.Module) -> Tensors:
            return {k: v.detach().cpu() for k, v in module.state_dict().items()}

        return cls(stage, {n: cpu(network.part(n)) for n in network.owned()},
                   {n: cpu(s) for n, s in state.items()}, epochs, dict(data or {}),
                   dict(state_types or {}))

    def save(self, folder: Path) -> Path:
        path = folder / OUTPUTS_FILE
        checkpoint.save_atomic(attrs.asdict(self), path)
        return path

    @classmethod
    def load(cls, folder: Path) -> StageOutputs:
        return cls(**checkpoint.load(folder / OUTPUTS_FILE))


def parse_source(spec: str, path: str) -> tuple[str, str]:
    """``"STAGE:NAME"`` -> (stage, name)."""
    if spec.count(":") != 1 or not all(spec.split(":")):
        raise RecipeError(f"{path}: {spec!r} must be 'STAGE:NAME', e.g. 'background:backbone'")
    stage, name = spec.split(":")
    return stage, name


def _lookup(spec: str, path: str, earlier: Mapping[str, StageOutputs],
            field: str) -> Tensors:
    stage, name = parse_source(spec, path)
    if stage not in earlier:
        raise RecipeError(f"{path}: no earlier stage {stage!r} to start from; "
                          f"{did_you_mean(stage, earlier)}")
    table: dict[str, Tensors] = getattr(earlier[stage], field)
    if name not in table:
        what = "part" if field == "parts" else "state"
        raise RecipeError(f"{path}: stage {stage!r} saved no {what} {name!r}; "
                          f"{did_you_mean(name, table)}")
    return table[name]


def _load(module: nn.Module, source: Tensors, what: str, hint: str) -> None:
    dest = module.state_dict()
    bad = [k for k in dest if k not in source or source[k].shape != dest[k].shape]
    if bad:
        raise RecipeError(f"{what} differs from the one it starts from ({bad[0]}); {hint}")
    module.load_state_dict(source)


def carried_parts(stage: rc.Stage, network: Network, previous: StageOutputs | None) -> list[str]:
    """The parts ``stage`` takes from the previous stage: same name, less ``fresh``, or only
    ``carry``."""
    if previous is None or stage.fresh is True:
        return []
    owned = network.owned()
    for key, names in (("fresh", stage.fresh if isinstance(stage.fresh, list) else []),
                       ("carry", stage.carry or [])):
        for name in names:
            if name not in owned:
                raise RecipeError(f"{key}: {name!r} is not a part of this stage; "
                                  f"{did_you_mean(name, owned)}")
    if stage.carry is not None:
        missing = [n for n in stage.carry if n not in previous.parts]
        if missing:
            raise RecipeError(f"carry: stage {previous.stage!r} has no part {missing[0]!r}; "
                              f"{did_you_mean(missing[0], previous.parts)}")
        return list(stage.carry)
    fresh = stage.fresh if isinstance(stage.fresh, list) else []
    return [n for n in owned if n in previous.parts and n not in fresh]


def start_network(stage: rc.Stage, network: Network, previous: StageOutputs | None,
                  earlier: Mapping[str, StageOutputs]) -> list[str]:
    """Load carried and ``init_from`` weights into ``network``; returns the parts loaded."""
    loaded = []
    hint = "set `fresh = true` (or list the part in `fresh`) in the stage to start it new"
    for name in carried_parts(stage, network, previous):
        assert previous is not None
        _load(network.part(name), previous.parts[name],
              f"stage {stage.name!r}: part {name!r}", hint)
        loaded.append(name)
    specs: dict[str, Any] = {"backbone": stage.model.backbone, **stage.model.encoders,
                             **stage.model.heads}
    for name, spec in specs.items():
        if spec.init_from:
            where = "model.backbone" if name == "backbone" else \
                f"model.{'heads' if name in stage.model.heads else 'encoders'}.{name}"
            source = _lookup(spec.init_from, f"{where}.init_from", earlier, "parts")
            _load(network.part(name), source, f"{where}", "build it with the same options")
            loaded.append(name)
    return loaded


def start_state(stage: rc.Stage, state: Mapping[str, nn.Module], types: Mapping[str, str],
                earlier: Mapping[str, StageOutputs]) -> None:
    """Load each ``[state.NAME] init_from = "STAGE:NAME"`` from the earlier stage's outputs;
    ``types`` holds this stage's registered state types by name."""
    for name, spec in stage.state.items():
        if spec.init_from and name in state:
            path = f"state.{name}.init_from"
            source = _lookup(spec.init_from, path, earlier, "state")
            saved_stage, saved_name = parse_source(spec.init_from, path)
            saved = _StateView(earlier[saved_stage].state_types.get(saved_name), source)
            _load_state(state[name], saved, _StateView(types.get(name), state[name].state_dict()),
                        f"{path}: {spec.init_from!r}")


@attrs.frozen
class _StateView:
    """A state's registered type (None where an old ``outputs.pt`` did not record it) and its
    tensors."""

    type: str | None
    tensors: Tensors

    def describe(self) -> str:
        """``a memory_bank state (features (128, 32))``."""
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.tensors.items())
        return f"a {self.type or 'state'}{' state' if self.type else ''} ({shapes or 'empty'})"

    def mismatch(self, other: _StateView) -> bool:
        """Whether ``other`` is of another type, or holds a tensor of another shape where this
        one's has a shape (an empty tensor, e.g. rows not written yet, takes the loaded one's)."""
        if self.type and other.type and self.type != other.type:
            return True
        return any(tensor.numel() and key in other.tensors
                   and other.tensors[key].shape != tensor.shape
                   for key, tensor in self.tensors.items())


def _load_state(module: nn.Module, saved: _StateView, own: _StateView, what: str) -> None:
    """Load ``saved`` into state ``module`` (``own`` as it is now), or raise a ``RecipeError``
    that says what ``what`` (the recipe key and its value) holds and what this stage has."""
    problem = f"{what} is {saved.describe()} but this stage's is {own.describe()}"
    hint = ("start it from a state of the same type saved by a stage trained on the same "
            "images, or remove init_from")
    if own.mismatch(saved):
        raise RecipeError(f"{problem}; {hint}")
    try:
        module.load_state_dict(saved.tensors)
    except (RuntimeError, ValueError, ComponentError) as exc:
        reason = " ".join(str(exc).split())
        raise RecipeError(f"{problem} ({reason}); {hint}") from None
