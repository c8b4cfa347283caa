"""The whole-set E-step's clustering under torchrun.

Each rank holds its share of the set's features (``corekit.distributed.split``). A clusterer
that fits shards (``ShardedClusterer``: k-means on the torch backend, spherical k-means) runs
its distributed Lloyd loop on them; any other (``backend = "faiss"`` or ``"sklearn"``, spectral,
a plugin's) fits on rank 0 over the features gathered there, and says so in the log. Either
way every rank gets the labels of the whole set, all-gathered with their dataset indices.
On one process this is ``clusterer.fit``.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch

from corekit import distributed
from corekit.components.clusterers import Clusterer, ClusterResult, ShardedClusterer


def fit_shards(clusterer: Clusterer, features: torch.Tensor, indices: torch.Tensor,
               n_images: int, log: Callable[[str], None]) -> ClusterResult:
    """The clusterer's result on the whole set from this rank's ``features`` (n_r, D) of the
    images ``indices`` (n_r,): labels (n_images,) in dataset order, the same centroids and
    inertia on every rank. ``clusterer.fit(features)`` on one process."""
    if not distributed.is_distributed():
        return clusterer.fit(features)
    device = features.device
    if isinstance(clusterer, ShardedClusterer) and clusterer.shards():
        result = clusterer.fit_shard(features)
        gathered = distributed.gather_rows(result.labels.to(device, torch.long))
    else:
        log(f"  E-step: {type(clusterer).__name__} fits on rank 0 over the features gathered "
            f"from {distributed.world_size()} processes (k-means and spherical k-means on the "
            "torch backend fit them where they are)")
        whole = distributed.gather_to_main(features)
        fitted = None
        if distributed.is_main():
            with distributed.alone():
                fitted = clusterer.fit(whole)
            fitted = attrs.evolve(fitted, labels=fitted.labels.cpu(),
                                  centroids=fitted.centroids.cpu())
        result = distributed.broadcast(fitted)
        gathered = result.labels.to(device, torch.long)
    labels = torch.full((n_images,), -1, dtype=torch.long, device=device)
    labels[distributed.gather_rows(indices.to(device))] = gathered
    return attrs.evolve(result, labels=labels, centroids=result.centroids.to(device))
