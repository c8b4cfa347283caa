"""Stage 3's refusal of an empty reliable cluster: with ``n_min = 0`` the
balanced labelled set would be empty, so the stage stops before it trains and says how many
reliable images each cluster kept."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from corekit import Need, TrainingError

if TYPE_CHECKING:
    from corekit import StageContext


class ReliableGuard(nn.Module):
    """``[state.NAME] type = "spice_reliable_guard"``, ``targets`` the reliable ``targets``
    state: at stage start, a ``TrainingError`` naming the per-cluster counts when a cluster of
    the ``n_clusters`` has no row (or no row was written)."""

    def __init__(self, n_clusters: int, targets: str = "reliable") -> None:
        super().__init__()
        self.n_clusters, self.targets = n_clusters, targets

    def needs(self) -> list[Need]:
        return [Need.state(self.targets, "targets")]

    def counts(self, ctx: StageContext) -> list[int]:
        rows = ctx.state[self.targets].rows()
        return torch.bincount(rows.label.cpu(), minlength=self.n_clusters).tolist()

    def on_stage_start(self, ctx: StageContext) -> None:
        state = ctx.state[self.targets]
        counts = self.counts(ctx) if state.ready else [0] * self.n_clusters
        if min(counts) == 0:
            empty = [k for k, c in enumerate(counts) if c == 0]
            raise TrainingError(
                f"state.{self.targets}: the reliable labels leave cluster(s) {empty} empty "
                f"(reliable images per cluster: {counts}), so the balanced labelled set is "
                f"empty and stage {ctx.stage!r} does not train. Lower "
                "pseudo_labeler.reliable.ratio or .confidence, or train SPICE-Self longer")
