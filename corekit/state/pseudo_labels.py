"""The pseudo-label buffer the E-step writes and losses read."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

UNLABELLED = -1


class PseudoLabels(nn.Module):
    """One cluster id per dataset index (``-1`` = none, e.g. not yet clustered or not reliable),
    written by the E-step (or a pseudo-labeler) and read by losses through ``step.labels()``;
    ``mask`` marks the labelled images (SPICE's reliable labels, arXiv 2103.09382) and
    ``centroids`` are the E-step's (K, D) centres."""

    def __init__(self, n_images: int, n_clusters: int) -> None:
        super().__init__()
        self.n_clusters = n_clusters
        self.register_buffer("labels", torch.full((n_images,), UNLABELLED, dtype=torch.long))
        self.register_buffer("centroids", torch.zeros(0))
        self.register_buffer("written", torch.tensor(False))

    def write(self, labels: torch.Tensor, centroids: torch.Tensor | None = None) -> None:
        """Replace the labels (N,) (negative = unlabelled) and, if given, the centroids."""
        self.labels = labels.to(self.labels.device, torch.long)
        if centroids is not None:
            self.centroids = centroids.detach().to(self.labels.device, torch.float32)
        self.written = torch.tensor(True, device=self.labels.device)

    @property
    def mask(self) -> torch.Tensor:
        """``(N,)`` bool: which images carry a label."""
        return self.labels >= 0

    @property
    def ready(self) -> bool:
        """Whether the labels were written (by an E-step or a load), even where some are ``-1``:
        an unlabelled image does not make the E-step run again."""
        return bool(self.written)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: Any,
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        """Buffers whose shapes change with each write are loaded by ``write``."""
        keys = [prefix + "labels", prefix + "centroids"]
        missing = [k for k in keys if k not in state_dict]
        if missing:
            missing_keys.extend(missing)
            return
        # saved before ``written`` existed: written where any image had a label
        written = state_dict.get(prefix + "written", (state_dict[keys[0]] >= 0).any())
        if bool(written):
            self.write(state_dict[keys[0]], state_dict[keys[1]])
