"""Neighbour mining (N_X of Eq. 2, arXiv 2005.12320): cosine, self excluded, chunked."""

from __future__ import annotations

import pytest
import torch
from deepclust_scan.neighbours import Neighbours, mine_neighbours


def test_nearest_by_cosine_self_excluded_nearest_first():
    features = torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [1.0, 1.2], [-1.0, 0.1]])
    # cosine ignores the length: row 1 is nearest to row 0, row 3 to row 2
    assert mine_neighbours(features, 1).flatten().tolist() == [1, 0, 3, 2, 2]
    assert mine_neighbours(features, 2)[0].tolist() == [1, 3]


def test_chunks_give_the_same_neighbours():
    features = torch.randn(50, 8)
    assert torch.equal(mine_neighbours(features, 5, chunk=7), mine_neighbours(features, 5))


def test_k_is_capped_at_n_minus_one():
    assert mine_neighbours(torch.randn(4, 3), 20).shape == (4, 3)
    with pytest.raises(ValueError, match="at least 2"):
        mine_neighbours(torch.randn(1, 3), 5)


def test_sample_draws_one_of_each_anchors_neighbours():
    state = Neighbours(k=3)
    state.indices = torch.tensor([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    drawn = torch.stack([state.sample(torch.tensor([0, 3])) for _ in range(200)])
    assert set(drawn[:, 0].tolist()) == {1, 2, 3} and set(drawn[:, 1].tolist()) == {0, 1, 2}
