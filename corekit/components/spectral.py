"""Spectral clustering on the nearest-neighbour graph of the features, as an E-step.

On frozen pretrained features the neighbours of an image are usually right even where k-means'
convex cells are not (measured: on three image folders the 10 nearest neighbours by cosine were
71-90 % of the same class, and the graph's clusters beat k-means by 0.03-0.18 NMI;
docs/benchmarks.md). The graph's clusters follow the data's own shape.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch.nn import functional as F

from corekit.components.clusterers import ClusterResult, positive
from corekit.errors import ComponentError

AUTO_NEIGHBOURS_MIN, AUTO_NEIGHBOURS_SHARE = 10, 0.01
"""``n_neighbors = "auto"``: 1 % of the images, at least 10. Measured on MobileNetV2 features
of three folders (docs/benchmarks.md, "A head on pretrained features"): 10 neighbours suited
450-480 images, 20 the 1,797 digits."""


def neighbours_for(n_neighbors: int | Literal["auto"], n_images: int) -> int:
    """The neighbour count of the graph of ``n_images`` images."""
    if n_neighbors == "auto":
        return max(AUTO_NEIGHBOURS_MIN, round(AUTO_NEIGHBOURS_SHARE * n_images))
    return n_neighbors


def _neighbours(_instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value == "auto":
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise ComponentError(f"{attribute.name} must be an integer >= 1 or 'auto', got "
                             f"{value!r}")
    positive(_instance, attribute, value)


@attrs.define
class SpectralClustering:
    """Normalised spectral clustering (Ng, Jordan and Weiss, NIPS 2001) of the symmetric
    ``n_neighbors``-nearest-neighbour graph of the L2-normalised features (cosine neighbours;
    an edge where either point is among the other's nearest, von Luxburg 2007, §2.2), computed
    with scikit-learn's ``SpectralClustering``: the ``n_clusters`` leading eigenvectors of the
    normalised graph Laplacian, then k-means on them (``n_init`` restarts from ``seed``).

    ``n_neighbors = "auto"`` grows the graph with the set: ``max(10, round(N / 100))``
    neighbours (``neighbours_for``), so a graph of thousands of images stays one piece.

    ``fit((N, D) features)`` gives labels (N,), centroids (K, D) = the mean of each cluster's
    normalised features (nearest-centroid assignment of new images, as ``deepclust predict``
    does), and inertia Σ (1 − cos(x, centroid))."""

    n_clusters: int = attrs.field(validator=positive)
    n_neighbors: int | Literal["auto"] = attrs.field(default=10, validator=_neighbours)
    n_init: int = attrs.field(default=10, validator=positive)
    seed: int = 0

    def fit(self, features: torch.Tensor) -> ClusterResult:
        """Cluster (N, D) ``features``; the result is on the features' device."""
        from sklearn.cluster import SpectralClustering as Sklearn

        n = features.shape[0]
        if n <= self.n_clusters:
            raise ComponentError(f"spectral clustering of {n} images into {self.n_clusters} "
                                 "clusters: give at least one image more than clusters")
        x = F.normalize(features.detach().float(), dim=1)
        model = Sklearn(self.n_clusters, affinity="nearest_neighbors",
                        n_neighbors=min(neighbours_for(self.n_neighbors, n), n - 1),
                        n_init=self.n_init,
                        random_state=self.seed, assign_labels="kmeans")
        labels = torch.as_tensor(model.fit_predict(x.cpu().numpy()), dtype=torch.long,
                                 device=x.device)
        counts = torch.bincount(labels, minlength=self.n_clusters).clamp_min(1)
        sums = torch.zeros(self.n_clusters, x.shape[1], device=x.device).index_add_(0, labels, x)
        centroids = sums / counts.unsqueeze(1)
        cosine = (x * F.normalize(centroids, dim=1)[labels]).sum(dim=1)
        return ClusterResult(labels, centroids, float((1 - cosine).sum()))
