"""SCAN's mined neighbours: the K nearest images of every image in the features of a frozen
pretrained part, mined once at stage start (Van Gansbeke et al. 2020, §2.1, arXiv 2005.12320)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from corekit import ComponentError, Need, parse_feature

if TYPE_CHECKING:
    from corekit import StageContext

CHUNK = 1024


def mine_neighbours(features: torch.Tensor, k: int, chunk: int = CHUNK) -> torch.Tensor:
    """The ``k`` nearest neighbours (N, k) of each of the N rows of ``features`` (N, D) by cosine
    similarity, nearest first, the row itself excluded (N_X of Eq. 2, arXiv 2005.12320; the
    official code draws from the K + 1 nearest, the image itself included). ``k`` is capped at
    N − 1; rows are compared ``chunk`` at a time, so memory is O(chunk · N)."""
    unit = F.normalize(features.float(), dim=1)
    n = unit.shape[0]
    k = min(k, n - 1)
    if k < 1:
        raise ValueError(f"mining neighbours needs at least 2 images, got {n}")
    out = []
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), device=unit.device)
        similarity = unit[rows] @ unit.T
        similarity[torch.arange(len(rows), device=unit.device), rows] = float("-inf")
        out.append(similarity.topk(k, dim=1).indices)
    return torch.cat(out)


class Neighbours(nn.Module):
    """``[state.NAME] type = "scan_neighbours"``: the K = ``k`` nearest neighbours of every
    training image (cosine, ``mine_neighbours``) in the features ``features`` (``BRANCH:PART``
    of a frozen part, default the backbone), mined at ``on_stage_start`` from
    ``ctx.features`` (so from the feature cache). Buffers, checkpointed with the run:
    ``features`` (N, D) and ``indices`` (N, K). K = 20 is the paper's (§3.1).

    ``sample(indices)`` draws one neighbour per anchor, uniformly among its K, from torch's
    global generator (seeded and checkpointed by the engine).
    """

    def __init__(self, features: str = "online:backbone", k: int = 20) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.branch, self.part = parse_feature(features, "features")
        self.k = k
        self.register_buffer("features", torch.zeros(0))
        self.register_buffer("indices", torch.zeros(0, dtype=torch.long))

    def needs(self) -> list[Need]:
        return [Need.output(self.part, self.branch, reads="any")]

    def on_stage_start(self, ctx: StageContext) -> None:
        network = ctx.model.network(self.branch)
        if network.owner(self.part) not in network.frozen:
            raise ComponentError(
                f"scan_neighbours mines neighbours once, in the features of {self.part!r}, "
                f"which trains in this stage; freeze it: train.freeze = [\"{self.part}\"]")
        features = ctx.features(f"{self.branch}:{self.part}")
        self.features = features.detach()
        self.indices = mine_neighbours(features, self.k)
        ctx.log(f"  scan: mined the {self.indices.shape[1]} nearest neighbours of "
                f"{len(features)} images in {self.branch}:{self.part}")

    def sample(self, indices: torch.Tensor) -> torch.Tensor:
        """One neighbour (B,) of each anchor ``indices`` (B,), uniform among its K."""
        rows = self.indices[indices.to(self.indices.device)]
        pick = torch.randint(rows.shape[1], (rows.shape[0],)).to(rows.device)
        return rows[torch.arange(rows.shape[0], device=rows.device), pick]
