"""An estimate of the number of clusters for an unlabelled image set whose K was not given.

Method (documented in docs/user-guide.md): up to 2,000 images, resized to at most 16×16,
projected on their first 50 principal components; k-means (scikit-learn, 3 restarts) for each
K in 2..min(30, n/5); the K with the highest silhouette score wins. It looks at pixels, not at
learnt features, so it is a starting point: pass ``--k`` when you know better.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import torch
from torch.nn import functional as F

MAX_IMAGES = 2000
MAX_SIDE = 16
MAX_K = 30


@attrs.frozen
class KEstimate:
    """The chosen K and the silhouette score of every K tried."""

    k: int
    scores: dict[int, float]
    n_images: int

    def save(self, folder: Path) -> Path:
        """``k_estimate.json`` and ``k_estimate.png`` (the silhouette curve) in ``folder``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "k_estimate.json"
        path.write_text(json.dumps({"k": self.k, "n_images": self.n_images,
                                    "method": "silhouette of k-means on PCA-50 pixels",
                                    "silhouette": self.scores}, indent=2))
        fig, ax = plt.subplots(figsize=(4, 2.8))
        ax.plot(list(self.scores), list(self.scores.values()), marker="o", markersize=3)
        ax.axvline(self.k, color="grey", linestyle="--")
        ax.set_xlabel("K")
        ax.set_ylabel("silhouette")
        ax.set_title(f"estimated K = {self.k}")
        fig.tight_layout()
        fig.savefig(folder / "k_estimate.png", dpi=100)
        plt.close(fig)
        return path


def pixel_features(data, seed: int = 0) -> np.ndarray:
    """(n, ≤ 50) PCA features of up to ``MAX_IMAGES`` images of ``data`` (an ImageSet)."""
    from sklearn.decomposition import PCA

    n = len(data)
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:MAX_IMAGES]
    images = data.batch(chosen.sort().values).cpu()
    side = min(MAX_SIDE, images.shape[-1])
    pixels = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True,
                           align_corners=False).flatten(1).numpy()
    components = min(50, pixels.shape[0] - 1, pixels.shape[1])
    return PCA(n_components=components, random_state=seed).fit_transform(pixels)


def estimate_k(data, seed: int = 0) -> KEstimate:
    """Pick K for ``data`` by the silhouette of k-means on its pixel features."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    features = pixel_features(data, seed)
    top = max(2, min(MAX_K, len(features) // 5))
    scores: dict[int, float] = {}
    for k in range(2, top + 1):
        labels = KMeans(k, n_init=3, random_state=seed).fit_predict(features)
        scores[k] = float(silhouette_score(features, labels, random_state=seed))
    best = max(scores, key=scores.__getitem__)
    return KEstimate(best, scores, len(features))
