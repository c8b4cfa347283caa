"""DigPro's groups under torchrun (spec P9, issue #32): ``L_group`` moves the groups on each
rank's own share of the batch, and rank 0's groups are broadcast after each commit and each
reset, so both ranks hold rank 0's groups; on one process nothing changes.

Each rank is given its own batch and its own bank rows; the test process computes what rank 0
alone would (its inputs, one process), and both ranks must hold exactly that.
"""

from __future__ import annotations

import pytest
import torch
from deepclust_digpro.losses import DynamicGrouping
from torch.nn import functional as F

from corekit.testing import FakeStep, run_on_ranks

WORLD = 2
K, D, B, M = 3, 4, 6, 12  # groups, width, a rank's batch, bank rows


def _inputs(rank: int) -> dict[str, torch.Tensor]:
    """Rank ``rank``'s batch (two views of q, p and the teacher's k) and bank rows."""
    g = torch.Generator().manual_seed(10 + rank)
    return {"q": torch.randn(2, B, D, generator=g), "p": torch.randn(2, B, D, generator=g),
            "k": torch.randn(2, B, D, generator=g),
            "bank": F.normalize(torch.randn(M, D, generator=g), dim=1)}


def _groups(rank: int) -> dict[str, torch.Tensor]:
    """The groups after one step's two commits on rank ``rank``'s batch, then after a reset
    on its bank rows."""
    loss = DynamicGrouping(n_clusters=K, dim=D, seed=0)
    x = _inputs(rank)
    outputs = {("online", "proj", v): x["q"][v] for v in range(2)}
    outputs |= {("online", "pred_clean", v): x["p"][v] for v in range(2)}
    outputs |= {("target", "proj", v): x["k"][v] for v in range(2)}
    loss(FakeStep(outputs))
    committed = loss.groups.clone()
    loss.reset(x["bank"], step=K)
    return {"committed": committed, "reset": loss.groups.clone()}


def _on_rank(rank: int, world: int) -> dict[str, torch.Tensor]:
    return _groups(rank)


@pytest.fixture(scope="module")
def ranks() -> list[dict[str, torch.Tensor]]:
    return run_on_ranks(_on_rank, WORLD)


@pytest.mark.parametrize("when", ["committed", "reset"])
def test_both_ranks_hold_rank_0s_groups(ranks, when):
    rank_0_alone, rank_1_alone = _groups(0)[when], _groups(1)[when]
    assert not torch.allclose(rank_0_alone, rank_1_alone), "the ranks' own groups would differ"
    for r in ranks:
        assert torch.equal(r[when], rank_0_alone)
