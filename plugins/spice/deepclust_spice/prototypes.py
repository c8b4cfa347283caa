"""SPICE's prototype pseudo-labelling, the E-step of stage 2 (Eq. 2-4, arXiv 2103.09382):
prototypes from each cluster's most confident images, then the images most
similar to each prototype get its label.

``prototype_pairs`` is the pure function; ``SpicePrototypeLabeler`` is the dataset-level
labeler (``[pseudo_labeler.NAME] type = "spice_prototype_labeler"``).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import torch

from corekit import ComponentError, LabelRows


def default_sizes(n: int, k: int) -> tuple[int, int]:
    """The code's ``M = ⌊0.5·⌊N/K⌋⌋`` and ``N_s = ⌊N/K⌋`` for N images and K clusters."""
    per_cluster = n // k
    return per_cluster // 2, per_cluster


def _top(values: torch.Tensor, count: int, allowed: torch.Tensor | None) -> torch.Tensor:
    """Indices of the ``count`` largest of ``values`` (N,), largest first (stable sort, so ties
    keep the lower index first), among ``allowed`` (N,) bool when given."""
    if allowed is not None:
        values = values.masked_fill(~allowed, float("-inf"))
        count = min(count, int(allowed.sum()))
    return torch.sort(values, descending=True, stable=True).indices[:count]


def prototype_pairs(features: torch.Tensor, probs: torch.Tensor, m: int, n_s: int,
                    overlap: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The (image, cluster) pairs of one head (Eq. 2-4, arXiv 2103.09382).

    ``features`` (N, D) L2-normalised embeddings, ``probs`` (N, K) one head's probabilities.
    For each cluster k: ``S_k`` the ``m`` images of largest ``probs[:, k]`` (Eq. 2), the
    prototype ``c_k`` their mean embedding, not re-normalised (Eq. 3), ``A_k`` the ``n_s``
    images of largest ``c_k · F_i`` (Eq. 4; the cosine ranking, never the Euclidean distance to
    the un-normalised centre). Returns ``(index, label)``, each (R,), ordered by cluster, then
    by similarity: with ``overlap`` R = K·n_s and an image may carry several labels; without,
    cluster k skips the images chosen (for ``S``) and labelled (for ``A``) by clusters < k.
    """
    if probs.dim() != 2 or features.shape[0] != probs.shape[0]:
        raise ComponentError(f"prototype_pairs: features {tuple(features.shape)} and probs "
                             f"{tuple(probs.shape)} must both be (N, ...) over the same N")
    n, k = probs.shape
    features = features.to(probs.device, torch.float64 if probs.dtype == torch.float64
                           else torch.float32)
    used = None if overlap else torch.zeros(n, dtype=torch.bool, device=probs.device)
    labelled = None if overlap else torch.zeros(n, dtype=torch.bool, device=probs.device)
    index, label = [], []
    for cluster in range(k):
        confident = _top(probs[:, cluster], m, None if overlap else ~used)
        if confident.numel() == 0:
            continue
        centre = features[confident].mean(dim=0)
        chosen = _top(features @ centre, n_s, None if overlap else ~labelled)
        if not overlap:
            used[confident] = True
            labelled[chosen] = True
        index.append(chosen)
        label.append(torch.full_like(chosen, cluster))
    if not index:
        empty = torch.zeros(0, dtype=torch.long, device=probs.device)
        return empty, empty
    return torch.cat(index), torch.cat(label)


@attrs.define
class SpicePrototypeLabeler:
    """SPICE's E-step as a dataset-level labeler (Eq. 2-4, arXiv 2103.09382).

    ``label({"features": (N, D), "probs": (N, H·K)})``: ``features`` the embedding bank rows
    (``"state:bank"``), ``probs`` the heads' probabilities on the images (the weak view, §III-B
    and Table VIII, arXiv 2103.09382): one head ``(N, K)``, or H heads side by side
    ``(N, H·K)`` (``spice_stack_flat``).
    ``m`` and ``n_s`` default to ``⌊0.5⌊N/K⌋⌋`` and ``⌊N/K⌋`` of the N images labelled.

    Rows: image ``index`` gets label ``h·K + k`` for head ``h``'s cluster ``k`` (weight 1), so
    the rows of all H heads live in one ``targets`` state of ``n_clusters = H·K``; with one
    head the label is the cluster. ``double_softmax_ce`` reads them back per head.
    """

    n_clusters: int
    m: int | None = None
    n_s: int | None = None
    overlap: bool = True
    reads: Mapping[str, str] = attrs.field(factory=lambda: {"features": "embedding",
                                                            "probs": "probs"})

    def sizes(self, n: int) -> tuple[int, int]:
        """``(M, N_s)`` for N images; N_s > N is an error naming the option."""
        m, n_s = default_sizes(n, self.n_clusters)
        m, n_s = self.m or m, self.n_s or n_s
        if n_s > n or m > n:
            raise ComponentError(f"spice_prototype_labeler: n_s = {n_s} and m = {m} must not "
                                 f"exceed the {n} images labelled; lower n_s / m or raise "
                                 "sample")
        if m < 1 or n_s < 1:
            raise ComponentError(f"spice_prototype_labeler: {n} images give M = {m}, "
                                 f"N_s = {n_s} for K = {self.n_clusters}; label at least "
                                 f"{2 * self.n_clusters} images")
        return m, n_s

    def label(self, inputs: Mapping[str, torch.Tensor]) -> LabelRows:
        features, probs = inputs["features"], inputs["probs"].float()
        k = self.n_clusters
        if probs.shape[1] % k:
            raise ComponentError(f"spice_prototype_labeler: probs of width {probs.shape[1]} "
                                 f"are not H heads of K = {k} clusters")
        stacked = probs.reshape(probs.shape[0], -1, k)
        sums = stacked.sum(dim=2)
        if bool((stacked < 0).any()) or not torch.allclose(sums, torch.ones_like(sums),
                                                           atol=1e-3):
            raise ComponentError("spice_prototype_labeler: inputs.probs must be probabilities "
                                 "(rows of each head on the simplex), got scores that are "
                                 "not: read a head that produces probs, not logits")
        m, n_s = self.sizes(probs.shape[0])
        index, label = [], []
        for h in range(stacked.shape[1]):
            i, y = prototype_pairs(features, stacked[:, h], m, n_s, self.overlap)
            index.append(i)
            label.append(y + h * k)
        return LabelRows.of(torch.cat(index), torch.cat(label))


def spice_prototype_labeler(n_clusters: int, m: int | None = None, n_s: int | None = None,
                            overlap: bool = True) -> SpicePrototypeLabeler:
    """``[pseudo_labeler.NAME] type = "spice_prototype_labeler"``; ``inputs = {features =
    "state:bank", probs = "online:heads_flat"}``, ``view = "weak"``, ``sample = N``,
    ``writes`` a targets state of ``n_clusters = H·K``."""
    for name, value in (("m", m), ("n_s", n_s)):
        if value is not None and value < 1:
            raise ComponentError(f"{name} must be at least 1, got {value}")
    return SpicePrototypeLabeler(n_clusters, m, n_s, overlap)
