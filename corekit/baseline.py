"""The pixel baseline: k-means on the raw pixels of the run's own images, computed in about a
second, so a user sees whether the deep run beat it.

The pixels are those the K estimate reads (``corekit.estimate_k.pixel_features``: images
resized to at most 16×16, first 50 principal components), of up to 2,000 images (a seeded
sample of a larger set); k-means (scikit-learn, 10 restarts) with the run's K, scored against
the labels. A set without labels has no baseline score.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import torch

from corekit import metrics
from corekit.estimate_k import MAX_IMAGES, pixel_features

METRICS = ("nmi", "acc", "ari")


@attrs.frozen
class PixelBaseline:
    """The scores of k-means on the pixels of ``n_images`` images, and its seconds."""

    nmi: float
    acc: float
    ari: float
    n_images: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self),
                "method": "k-means on raw pixels (PCA-50 of images at most 16 px)"}

    def describe(self, run: dict[str, Any]) -> str:
        """One line: the baseline's scores and whether ``run`` (final metrics) beat them."""
        scores = "  ".join(f"{k.upper()} {getattr(self, k):.4f}" for k in METRICS)
        line = f"baseline, k-means on raw pixels of {self.n_images} images: {scores}"
        if "nmi" in run:
            gain = run["nmi"] - self.nmi
            verdict = "beat it" if gain > 0 else "did not beat it"
            line += f"; this run {verdict} (NMI {gain:+.4f})"
        return line

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> PixelBaseline:
        fields = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in fields})


def pixel_baseline(data: Any, k: int, seed: int = 0) -> PixelBaseline | None:
    """k-means with ``k`` clusters on the pixels of ``data`` (an ImageSet) scored against its
    labels; None where it has none."""
    from sklearn.cluster import KMeans

    if getattr(data, "labels", None) is None:
        return None
    t0 = time.perf_counter()
    sample = data.subset(MAX_IMAGES, seed) if len(data) > MAX_IMAGES else data
    features = pixel_features(sample, seed)
    predicted = KMeans(k, n_init=10, random_state=seed).fit_predict(features)
    scores = metrics.evaluate(sample.labels.cpu(), torch.from_numpy(predicted), k)
    return PixelBaseline(*(float(scores[m]) for m in METRICS), len(sample),
                         time.perf_counter() - t0)


def baseline_line(final: dict[str, Any]) -> str | None:
    """The baseline's line for a run's ``final`` (``final.json``), None where it has none."""
    payload = final.get("pixel_baseline")
    return PixelBaseline.from_json(payload).describe(final) if payload else None
