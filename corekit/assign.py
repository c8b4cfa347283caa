"""Which image went where, and how sure: assignments with a confidence, and the
``assignments.csv`` every run writes."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def centroid_confidence(features: torch.Tensor, centroids: torch.Tensor,
                        labels: torch.Tensor) -> torch.Tensor:
    """``1 − d(x, c_own) / d(x, c_nearest other)`` clamped to [0, 1]: 1 at the own centroid, 0
    half-way to another. ``features`` (N, D), ``centroids`` (K, D), ``labels`` (N,) → (N,)."""
    distances = torch.cdist(features.float(), centroids.float().to(features.device))
    own = distances.gather(1, labels.view(-1, 1).to(distances.device)).squeeze(1)
    if centroids.shape[0] < 2:
        return torch.ones_like(own)
    others = distances.scatter(1, labels.view(-1, 1).to(distances.device), float("inf"))
    nearest = others.min(dim=1).values
    return (1 - own / nearest.clamp_min(1e-12)).clamp(0.0, 1.0)


def nearest_centroid(features: torch.Tensor,
                     centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (N,) of the nearest (Euclidean) of ``centroids`` (K, D) and their confidence."""
    labels = torch.cdist(features.float(), centroids.float().to(features.device)).argmin(dim=1)
    return labels, centroid_confidence(features, centroids, labels)


def as_probs(scores: torch.Tensor, produces: str) -> torch.Tensor:
    """A head's ``scores`` (..., K) as float32 probabilities over K, the last axis: the
    softmax of logits, probabilities as they are."""
    return scores.float().softmax(dim=-1) if produces == "logits" else scores.float()


def head_assignment(scores: torch.Tensor, produces: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax over K of a head's ``scores`` (N, K) and its probability, each (N,); of a stacked
    head's (N, H, K), one per head: (N, H)."""
    confidence, labels = as_probs(scores, produces).max(dim=-1)
    return labels, confidence.clamp(0.0, 1.0)


def write_assignments(path: Path, cluster: torch.Tensor, confidence: torch.Tensor,
                      names: Any | None = None, labels: torch.Tensor | None = None,
                      classes: Sequence[str] | None = None) -> Path:
    """``index,image,cluster,confidence[,label[,label_index]]`` per image; ``image`` is the
    path relative to the image folder (empty for sets without files), never an absolute path.
    ``label`` is the class name where the set has ``classes`` (an image folder's class folders;
    ``label_index`` then keeps the number), else the class number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    named = labels is not None and classes is not None
    columns = ["index", "image", "cluster", "confidence"] + (["label"] if labels is not None
                                                             else []) + \
        (["label_index"] if named else [])
    cluster, confidence = cluster.cpu().tolist(), confidence.cpu().tolist()
    truth = labels.cpu().tolist() if labels is not None else None
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i, (k, c) in enumerate(zip(cluster, confidence, strict=True)):
            row = [i, names[i] if names is not None else "", k, f"{c:.4f}"]
            if truth is not None:
                row += [classes[truth[i]], truth[i]] if named else [truth[i]]
            writer.writerow(row)
    return path
