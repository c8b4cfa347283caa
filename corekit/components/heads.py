"""Built-in heads: feature -> what a loss reads.

Each head has an ``out_dim`` attribute and a ``produces`` attribute naming what it outputs (a
``corekit.needs.OutputKind``: ``embedding``, ``unit``, ``logits`` or ``probs``), which the
composer checks against what each loss ``reads``. A head of H stacked heads (``StackedHead``)
also has ``stack = H``: its output is ``(B, H, out_dim)``.
"""

from __future__ import annotations

import copy
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F


class MLPProjector(nn.Sequential):
    """Projection MLP ``Linear → [BN] → ReLU → … → Linear`` (SimCLR's g(·), Chen et al. 2020
    §2.1; BYOL/ProPos projector 512→4096→256 with BN; CC's heads without BN,
    Li et al. 2021 §3.2). ``normalize`` L2-normalises the output rows.

    ``produces`` is ``"unit"`` with ``normalize``, else ``"embedding"``.
    """

    def __init__(self, in_dim: int, hidden: int = 2048, out_dim: int = 128, layers: int = 2,
                 batch_norm: bool = True, normalize: bool = False) -> None:
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers - 1):
            blocks += [nn.Linear(width, hidden)]
            blocks += [nn.BatchNorm1d(hidden)] if batch_norm else []
            blocks += [nn.ReLU(inplace=True)]
            width = hidden
        blocks.append(nn.Linear(width, out_dim))
        if normalize:
            blocks.append(L2Normalize())
        super().__init__(*blocks)
        self.out_dim = out_dim
        self.produces = "unit" if normalize else "embedding"


class L2Normalize(nn.Module):
    """Row-wise ``x / ‖x‖₂``."""

    def forward(self, x):
        return F.normalize(x, dim=1)


class Predictor(MLPProjector):
    """BYOL predictor q(·) ``Linear → BN → ReLU → Linear`` (Grill et al. 2020 §3.1); weights
    N(0, 0.01²), biases 0 as in ProPos. ``out_dim`` defaults to ``in_dim``.

    ``produces = "embedding"`` (raw, un-normalised predictions; losses normalise them).
    """

    def __init__(self, in_dim: int, hidden: int = 4096, out_dim: int | None = None,
                 init_std: float = 0.01) -> None:
        super().__init__(in_dim, hidden=hidden, out_dim=out_dim or in_dim, layers=2,
                         batch_norm=True)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=init_std)
                nn.init.zeros_(module.bias)


class ClusterHead(nn.Module):
    """Cluster head ``Linear → ReLU → Linear → softmax`` over ``n_clusters`` (CC's g_C,
    Li et al. 2021 §3.3). ``output="logits"`` skips the softmax.

    ``produces`` is ``output``: ``"probs"`` (rows on the simplex, what CC's losses read) or
    ``"logits"``.
    """

    def __init__(self, in_dim: int, n_clusters: int, hidden: int | None = None,
                 output: Literal["probs", "logits"] = "probs") -> None:
        super().__init__()
        if output not in ("probs", "logits"):
            raise ValueError(f"output must be 'probs' or 'logits', not {output!r}")
        width = hidden or in_dim
        self.mlp = nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(inplace=True),
                                 nn.Linear(width, n_clusters))
        self.output = output
        self.out_dim = n_clusters
        self.produces: Literal["probs", "logits"] = output

    def forward(self, h):
        logits = self.mlp(h)
        return logits.softmax(dim=1) if self.output == "probs" else logits


@runtime_checkable
class StackedHead(Protocol):
    """``stack`` heads on one input: ``(B, D) → (B, stack, out_dim)``, head ``h`` at
    ``[:, h]``. ``select(h)`` is head ``h`` alone, a module ``(B, D) → (B, out_dim)`` that
    produces what the stack produces (what a ``selection`` state keeps)."""

    stack: int
    produces: str

    def select(self, index: int) -> nn.Module: ...


class StackedClusterHead(nn.Module):
    """``stack`` independent ``ClusterHead``s on one input (SPICE's H = 10 heads,
    arXiv 2103.09382): ``(B, in_dim) → (B, stack, n_clusters)``. Each head is built, and
    initialised, as a ``ClusterHead`` is, one after the other.

    ``produces`` is ``output`` and ``stack`` is H: a reader must accept a stack
    (``Need.output(..., stack=True)``) or read the head a ``selection`` state keeps.
    ``select(h)`` is a copy of head ``h``, a plain ``ClusterHead``.
    """

    def __init__(self, in_dim: int, n_clusters: int, stack: int = 10, hidden: int | None = None,
                 output: Literal["probs", "logits"] = "probs") -> None:
        super().__init__()
        if stack < 1:
            raise ValueError(f"stack must be at least 1, not {stack}")
        self.heads = nn.ModuleList(ClusterHead(in_dim, n_clusters, hidden, output)
                                   for _ in range(stack))
        self.out_dim = n_clusters
        self.stack = stack
        self.produces: Literal["probs", "logits"] = output

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim) → (B, stack, n_clusters)``."""
        return torch.stack([head(h) for head in self.heads], dim=1)

    def select(self, index: int) -> ClusterHead:
        """A copy of head ``index``."""
        return copy.deepcopy(self.heads[index])


class LinearL2(nn.Module):
    """A linear map followed by L2 normalisation (IDFD's 128-d embedding, arXiv 2106.00131).

    ``produces = "unit"``.
    """

    def __init__(self, in_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.out_dim = out_dim
        self.produces = "unit"

    def forward(self, x):
        return F.normalize(self.linear(x), dim=1)
