"""The online network: named encoders and heads wired by the names they read."""

from __future__ import annotations

import copy

import torch
from torch import nn


class Network(nn.Module):
    """Encoders (image -> features) and heads (a named input -> features), computed lazily.

    ``inputs[head]`` names the encoder or head a head reads, so heads chain
    (``backbone -> proj -> pred``). Parts in ``frozen`` run without gradient in eval mode.
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        heads: dict[str, nn.Module],
        inputs: dict[str, str],
        frozen: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.heads = nn.ModuleDict(heads)
        self.inputs = dict(inputs)
        self.frozen = frozenset(frozen)
        for name in self.frozen:
            self.part(name).requires_grad_(False)

    def part(self, name: str) -> nn.Module:
        return self.encoders[name] if name in self.encoders else self.heads[name]

    def names(self) -> list[str]:
        return [*self.encoders.keys(), *self.heads.keys()]

    def out_dim(self, name: str) -> int:
        return int(self.part(name).out_dim)

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
        if name in self.encoders:
            source = x
        else:
            source = self.compute(self.inputs[name], x, cache)
        module = self.part(name)
        if name in self.frozen:
            module.eval()
            with torch.no_grad():
                out = module(source)
        else:
            out = module(source)
        cache[name] = out
        return out

    def train(self, mode: bool = True) -> Network:
        super().train(mode)
        for name in self.frozen:
            self.part(name).eval()
        return self

    def subnetwork(self, parts: list[str]) -> Network:
        """A deep copy of ``parts`` and everything they read (used for the EMA target)."""
        keep: list[str] = []
        for name in parts:
            for dep in self.dependencies(name):
                if dep not in keep:
                    keep.append(dep)
        encoders = {n: copy.deepcopy(self.encoders[n]) for n in keep if n in self.encoders}
        heads = {n: copy.deepcopy(self.heads[n]) for n in keep if n in self.heads}
        inputs = {n: self.inputs[n] for n in heads}
        return Network(encoders, heads, inputs)
