"""One head of a stacked part, selected without labels and kept as it was: a ``selection``
state."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from corekit.assign import as_probs
from corekit.components.heads import StackedHead
from corekit.errors import did_you_mean
from corekit.needs import Need
from corekit.network import Network

if TYPE_CHECKING:
    from corekit.lifecycle import StageContext


def information(probs: torch.Tensor) -> torch.Tensor:
    """I(x; k) = H(k) − H(k | x) of each head: the entropy of its mean prediction less the mean
    entropy of its predictions (IMSAT, Hu et al., arXiv 1702.08720). ``probs`` (N, H, K) →
    (H,); 0 for a uniform or a collapsed head, log K for confident, balanced ones."""
    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.clamp_min(1e-12).log()).sum(dim=-1)

    return entropy(probs.mean(dim=0)) - entropy(probs).mean(dim=0)


class Selection(nn.Module):
    """The best head so far of the stacked part ``part`` (a ``StackedHead``, e.g.
    ``stacked_cluster_head``): its ``index``, the 0-based ``epoch`` it was selected after and
    its ``score``, and a snapshot of it with every part it reads, as they were then
    (``network``, a branch named after the state; every part of it frozen).

    After each epoch (``on_epoch_end``) every head is scored on the whole training set without
    labels (``scores``, lowest wins) and one that beats the record replaces it (``offer``); a
    stage that trains no epoch selects once at its end. ``eval.assign = "head:PART@NAME"``
    assigns with the snapshot, ``step.output(PART, view, branch=NAME)`` reads it, and the
    stage's ``outputs.pt`` holds it.

    The score here is −I(x; k) (``information``): confident, balanced heads win. A plugin
    selects by its own label-free score (SPICE's lowest loss, arXiv 2103.09382) by subclassing and
    overriding ``scores``.
    """

    def __init__(self, network: Network, part: str) -> None:
        super().__init__()
        _check_stacked(network, part)
        self.part = part
        self.network = snapshot_network(network, part)
        self.register_buffer("index", torch.tensor(-1))
        self.register_buffer("epoch", torch.tensor(-1))
        self.register_buffer("score", torch.tensor(float("inf")))

    def needs(self) -> list[Need]:
        return [Need.output(self.part, reads="scores", stack=True)]

    @property
    def written(self) -> bool:
        """Whether a head was selected."""
        return int(self.index) >= 0

    def scores(self, ctx: StageContext) -> torch.Tensor:
        """(H,) score of each head on the whole training set, lower is better: −I(x; k)."""
        probs = as_probs(ctx.features(self.part), ctx.model.online.produces(self.part))
        return -information(probs)

    @torch.no_grad()
    def offer(self, scores: torch.Tensor, ctx: StageContext) -> bool:
        """Keep the head with the lowest of ``scores`` (H,) if it beats the record (a tie keeps
        the record): its index, ``ctx.epoch``, its score and a snapshot of it and what it reads
        from ``ctx.model.online``. Whether it did."""
        best = int(scores.argmin())
        score = scores[best].detach().float().to(self.score.device)
        if not bool(score < self.score):
            return False
        self.index.fill_(best)
        self.epoch.fill_(ctx.epoch)
        self.score.copy_(score)
        self._snapshot(ctx.model.online, best)
        return True

    def on_epoch_end(self, ctx: StageContext) -> None:
        self.offer(self.scores(ctx), ctx)

    def on_stage_end(self, ctx: StageContext) -> None:
        if ctx.epochs == 0 and not self.written:
            self.offer(self.scores(ctx), ctx)

    def _snapshot(self, online: Network, index: int) -> None:
        for name in self.network.owned():
            source = online.part(name)
            if name == self.part:
                source = source.select(index)
            self.network.part(name).load_state_dict(source.state_dict())


def _check_stacked(network: Network, part: str) -> None:
    if part not in network.names():
        raise ValueError(f"part {part!r} is not a part of the model; "
                         f"{did_you_mean(part, network.names())}")
    if not isinstance(network.part(part), StackedHead):
        raise ValueError(f"part {part!r} ({network.describe_part(part)}) is one head: select "
                         "among the heads of a part with stack = H, e.g. type = "
                         "'stacked_cluster_head'")


def snapshot_network(online: Network, part: str) -> Network:
    """A frozen copy of ``part`` and every part it reads, ``part`` being one head of its stack
    (head 0 until a head is selected)."""
    chain = online.dependencies(part)
    copies = {name: copy.deepcopy(online.part(name)) for name in chain[:-1]}
    copies[part] = online.part(part).select(0)
    encoders = {n: m for n, m in copies.items() if online.owner(n) in online.encoders}
    heads = {n: m for n, m in copies.items() if n not in encoders}
    inputs = {n: online.inputs[n] for n in chain if n in online.inputs}
    labels = {n: online.labels[n] for n in chain if n in online.labels}
    return Network(encoders, heads, inputs, frozen=frozenset(chain), labels=labels)
