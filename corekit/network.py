"""The networks of a stage: the online network (named encoders and heads wired by the names
they read) and its branches (``Networks``), each branch a state holding a copy (``Branch``)."""

from __future__ import annotations

import copy
from typing import Protocol, runtime_checkable

import attrs
import torch
from torch import nn

from corekit.errors import did_you_mean
from corekit.recipe.schema import FrozenBatchNorm

ENCODER_OUTPUT = "embedding"


class Network(nn.Module):
    """Encoders (image -> features) and heads (a named input -> features), computed lazily.

    ``inputs[head]`` names the encoder or head a head reads, so heads chain
    (``backbone -> proj -> pred``). ``shares[head] = owner`` applies ``owner``'s module to
    ``head``'s own input (DigPro's one predictor on the noisy and the clean projection): the
    module and its parameters exist once, the outputs are cached per head name. Parts in
    ``frozen`` run without gradient in eval mode; with ``freeze_bn = "train"`` their BatchNorm
    layers follow the network's mode instead (in training: batch statistics, running statistics
    updated, parameters unchanged). ``labels[name]`` says what built a part, for messages.
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        heads: dict[str, nn.Module],
        inputs: dict[str, str],
        frozen: frozenset[str] = frozenset(),
        shares: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        freeze_bn: FrozenBatchNorm = "eval",
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.heads = nn.ModuleDict(heads)
        self.inputs = dict(inputs)
        self.shares = dict(shares or {})
        self.labels = dict(labels or {})
        self.frozen = frozenset(frozen)
        self.freeze_bn = freeze_bn
        for name in self.frozen:
            self.part(name).requires_grad_(False)

    def owner(self, name: str) -> str:
        """The part whose module ``name`` runs (itself unless it shares another head's)."""
        return self.shares.get(name, name)

    def part(self, name: str) -> nn.Module:
        name = self.owner(name)
        return self.encoders[name] if name in self.encoders else self.heads[name]

    def names(self) -> list[str]:
        return [*self.encoders.keys(), *self.heads.keys(), *self.shares.keys()]

    def owned(self) -> list[str]:
        """Parts with a module of their own (what a checkpoint and a stage hand-off hold)."""
        return [*self.encoders.keys(), *self.heads.keys()]

    def fixed_parts(self) -> frozenset[str]:
        """The frozen parts that training leaves exactly as they are: all of them, less those
        whose BatchNorm running statistics update (``freeze_bn = "train"``)."""
        if self.freeze_bn == "eval":
            return self.frozen
        return frozenset(n for n in self.frozen if not _batch_norms(self.part(n)))

    def _hold_frozen(self, module: nn.Module) -> None:
        """Put frozen part ``module`` in its mode: eval, its BatchNorm layers in the network's
        mode where ``freeze_bn = "train"``."""
        module.eval()
        if self.freeze_bn == "train":
            for layer in _batch_norms(module):
                layer.train(self.training)

    def out_dim(self, name: str) -> int:
        return int(self.part(name).out_dim)

    def produces(self, name: str) -> str:
        """What part ``name`` outputs (``corekit.needs.OutputKind``)."""
        if self.owner(name) in self.encoders:
            return str(getattr(self.part(name), "produces", ENCODER_OUTPUT))
        return str(self.part(name).produces)

    def stack(self, name: str) -> int | None:
        """How many heads part ``name`` stacks (``stack = H``: it produces ``(B, H, K)``), or
        None for one output ``(B, D)``."""
        stack = getattr(self.part(name), "stack", None)
        return None if stack is None else int(stack)

    def describe_part(self, name: str) -> str:
        kind = "encoder" if self.owner(name) in self.encoders else "head"
        label = self.labels.get(name)
        return f"{kind} {name!r}" + (f", {label}" if label else "")

    def dependencies(self, name: str) -> list[str]:
        """``name`` and every part it reads, input first."""
        chain = [name]
        while chain[0] in self.inputs:
            chain.insert(0, self.inputs[chain[0]])
        return chain

    def compute(self, name: str, x: torch.Tensor, cache: dict[str, torch.Tensor]) -> torch.Tensor:
        """The output of part ``name`` on image batch ``x``, memoised in ``cache``."""
        if name in cache:
            return cache[name]
        source = x if self.owner(name) in self.encoders else \
            self.compute(self.inputs[name], x, cache)
        module = self.part(name)
        if self.owner(name) in self.frozen:
            self._hold_frozen(module)
            with torch.no_grad():
                out = module(source)
        else:
            out = module(source)
        cache[name] = out
        return out

    def compile_parts(self) -> None:
        """``torch.compile`` every encoder and head in place (``nn.Module.compile``: parameter
        names, checkpoints and stage hand-offs stay as they are). Compilation happens at the
        first call; build EMA copies (``subnetwork``) before this, not after."""
        for module in [*self.encoders.values(), *self.heads.values()]:
            module.compile()

    def train(self, mode: bool = True) -> Network:
        super().train(mode)
        for name in self.frozen:
            self._hold_frozen(self.part(name))
        return self

    def subnetwork(self, parts: list[str]) -> Network:
        """A deep copy of ``parts``, everything they read and the heads they share (used for
        an EMA target); a shared head keeps reading its owner's copy."""
        keep: list[str] = []
        for name in parts:
            for dep in self.dependencies(name):
                for needed in (self.owner(dep), dep):
                    if needed not in keep:
                        keep.append(needed)
        copied = {n: copy.deepcopy(self.part(n)) for n in keep if n not in self.shares}
        encoders = {n: m for n, m in copied.items() if n in self.encoders}
        heads = {n: m for n, m in copied.items() if n in self.heads}
        inputs = {n: self.inputs[n] for n in keep if n in self.inputs}
        shares = {n: self.shares[n] for n in keep if n in self.shares}
        labels = {n: self.labels[n] for n in keep if n in self.labels}
        return Network(encoders, heads, inputs, shares=shares, labels=labels)


def _batch_norms(module: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers inside ``module`` (``module`` itself included)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@runtime_checkable
class Branch(Protocol):
    """A state that is a second branch of the model (an EMA target): ``step.output(name,
    view, branch=NAME)`` runs its ``network`` without gradient."""

    network: Network


@attrs.define
class Networks:
    """The networks of a stage: the online network and its branches (every EMA state, by its
    state name; ``[model.target]`` is the branch ``target``)."""

    online: Network
    branches: dict[str, Branch] = attrs.field(factory=dict)

    @property
    def target(self) -> Branch | None:
        """The ``target`` branch, if the stage has one."""
        return self.branches.get("target")

    def network(self, branch: str) -> Network:
        """The network of ``branch`` (``online`` or an EMA state's name)."""
        if branch == "online":
            return self.online
        if branch not in self.branches:
            raise KeyError(f"this stage has no branch {branch!r}; "
                           f"{did_you_mean(branch, ['online', *self.branches])}")
        return self.branches[branch].network
