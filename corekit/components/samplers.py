"""Built-in samplers: the order in which one epoch visits the training set.

A sampler is built as ``factory(**options)``; at the start of every epoch the engine calls
``order(n, count, generator, states)`` with the dataset size ``n``, the ``count`` images the
epoch draws (steps × batch size), the epoch's seeded CPU generator and the stage's named state
(``states["pseudo"]`` is the E-step's ``PseudoLabels``). It returns a ``(count,)`` int64 tensor
of dataset indices. A sampler that reads state declares it with ``needs() -> list[Need]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import attrs
import torch

from corekit.needs import Need


@runtime_checkable
class Sampler(Protocol):
    """What the engine asks of a sampler (``needs()`` is optional and not part of the check)."""

    def order(self, n: int, count: int, generator: torch.Generator,
              states: Mapping[str, Any]) -> torch.Tensor:
        """``(count,)`` int64 indices into a dataset of ``n`` images: one epoch's order."""
        ...


@attrs.frozen
class Shuffle:
    """A uniform random permutation, ``randperm(n)[:count]``; when ``count > n``, further
    independent permutations follow, so every image is seen once per ``n`` draws."""

    def order(self, n: int, count: int, generator: torch.Generator,
              states: Mapping[str, Any]) -> torch.Tensor:
        if n < 1:
            raise ValueError(f"shuffle: cannot order an empty dataset (n = {n})")
        rounds = max(math.ceil(count / n), 1)
        perms = [torch.randperm(n, generator=generator) for _ in range(rounds)]
        return torch.cat(perms)[:count]


@attrs.frozen
class ClusterBalanced:
    """Draws with replacement, each cluster equally likely (ProPos's CIFAR-20 resampling):
    with ``y`` the E-step's labels ``(n,)`` over ``K`` clusters,

        w_i = n / |{j : y_j = y_i}|,    order = multinomial(w, count, replacement=True)

    so a draw lands in each non-empty cluster with probability ``1 / (number of non-empty
    clusters)``, small clusters being revisited more often.
    """

    def needs(self) -> list[Need]:
        return [Need.labels()]

    def order(self, n: int, count: int, generator: torch.Generator,
              states: Mapping[str, Any]) -> torch.Tensor:
        pseudo = states["pseudo"]
        labels = pseudo.labels.cpu()
        if labels.numel() != n:
            raise ValueError(f"cluster_balanced: {labels.numel()} pseudo-labels for {n} images")
        if bool((labels < 0).any()):
            raise ValueError("cluster_balanced: some images have no cluster yet (label -1); "
                             "run the E-step ([clusterer]) before the first epoch")
        counts = torch.bincount(labels, minlength=pseudo.n_clusters).float()
        weights = n / counts[labels]
        return torch.multinomial(weights, count, replacement=True, generator=generator)
