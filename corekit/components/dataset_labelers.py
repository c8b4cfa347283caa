"""Dataset-level labelers: whole-set inputs -> label rows (``corekit.state.LabelRows``), written
into a ``targets`` state (``[pseudo_labeler.NAME] writes = "targets"``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch
from torch.nn import functional as F

from corekit.components.clusterers import Clusterer
from corekit.errors import ComponentError
from corekit.state.targets import LabelRows


def _fraction(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0 < value <= 1:
        raise ComponentError(f"{attribute.name} must be in (0, 1], got {value}")


@attrs.define
class ClusterLabels:
    """Labels from a clusterer, as an E-step gives them, keeping the most central images.

    ``label({"features": (M, D)})`` fits the clusterer on the features (L2-normalised first
    when ``normalize``) and keeps, in each cluster, the ``keep`` fraction of its images nearest
    its centroid by cosine (at least one), each with weight 1. A head trained on the kept rows
    learns the clusters where they are least ambiguous: the idea of the confident samples of
    SCAN's self-labelling (arXiv 2005.12320) and SPICE's reliable labels (arXiv 2103.09382),
    here ranked by closeness to the clusterer's centroid."""

    clusterer: Clusterer
    keep: float = attrs.field(default=1.0, validator=_fraction)
    normalize: bool = True
    reads: Mapping[str, str] = attrs.field(factory=lambda: {"features": "any"})

    def label(self, inputs: Mapping[str, torch.Tensor]) -> LabelRows:
        features = inputs["features"].float()
        unit = F.normalize(features, dim=1)
        result = self.clusterer.fit(unit if self.normalize else features)
        labels = result.labels.to(features.device)
        centres = F.normalize(result.centroids.to(features.device).float(), dim=1)
        closeness = (unit * centres[labels]).sum(dim=1)
        kept = [_most_central(labels == k, closeness, self.keep)
                for k in range(self.clusterer.n_clusters)]
        index = torch.cat(kept)
        return LabelRows.of(index, labels[index])


def _most_central(members: torch.Tensor, closeness: torch.Tensor, keep: float) -> torch.Tensor:
    """The ``keep`` fraction (at least one) of the images ``members`` (M,) bool with the highest
    ``closeness`` (M,), as indices; none for an empty cluster."""
    index = members.nonzero().squeeze(1)
    if index.numel() == 0:
        return index
    count = max(1, round(keep * index.numel()))
    return index[closeness[index].argsort(descending=True)[:count]]


def cluster_labels(make_clusterer: Callable[[str | dict[str, Any], str], Clusterer],
                   clusterer: str | dict[str, Any] = "kmeans", keep: float = 1.0,
                   normalize: bool = True) -> ClusterLabels:
    """``[pseudo_labeler.NAME] type = "cluster"``: ``clusterer`` is a registered clusterer's
    name or its table (``{type = "spectral", n_neighbors = 10}``); ``keep`` the fraction of
    each cluster kept, most central first; ``inputs = {features = "BRANCH:PART"}``."""
    return ClusterLabels(make_clusterer(clusterer, "clusterer"), keep=keep, normalize=normalize)
