"""HSD on two gloo ranks mines within each rank's local batch (specs/hadis.md §2.4.2: "uses the
local batch only (no cross-GPU gather in the official code)").

So each rank's value and gradients are those of HSD on its own half, the 2-rank objective (what
DDP's gradient averaging optimises) is the mean of the per-rank local values, and DDP's averaged
parameter gradient is the gradient of that mean. It is not the full-batch loss: hard pairs are
never mined across ranks.
"""

from __future__ import annotations

import pytest
import torch
from deepclust_hadis.losses import HSD

from corekit.testing import FakeStep, ddp_mean, rank_slice, run_on_ranks

WORLD = 2
N, D_IN, D = 8, 5, 4  # global batch, input width, embedding width


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)  # continuous random inputs: no mining ties (spec P4)
    return {"x": torch.randn(2, N, D_IN, generator=g), "k": torch.randn(2, N, D, generator=g),
            "w": torch.randn(D_IN, D, generator=g)}


def _run(x: torch.Tensor, k: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """HSD with predictions ``x[v] @ w`` (``w`` stands in for the student) and teacher outputs
    ``k[v]`` on views v = 0, 1: value and gradients."""
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    outputs = {("online", "pred", v): x[v] @ w for v in range(2)}
    outputs |= {("target", "proj", v): k[v] for v in range(2)}
    loss = HSD()(FakeStep(outputs))
    loss.backward()
    return {"loss": loss.detach(), "x": x.grad, "w": w.grad}


def _half(inputs: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    mine = rank_slice(N, rank, WORLD)
    return {"x": inputs["x"][:, mine], "k": inputs["k"][:, mine], "w": inputs["w"]}


def _on_rank(rank: int, world: int, inputs: dict[str, torch.Tensor]) -> dict:
    terms = _run(**_half(inputs, rank))
    terms["w_ddp"] = ddp_mean(terms["w"])  # DDP: the mean of the ranks' parameter gradients
    return terms


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    return run_on_ranks(_on_rank, WORLD, _inputs())


def test_each_rank_computes_hsd_of_its_local_batch(ranks):
    inputs = _inputs()
    for rank, result in enumerate(ranks):
        local = _run(**_half(inputs, rank))
        for key in ("loss", "x", "w"):
            torch.testing.assert_close(result[key], local[key])


def test_the_two_rank_objective_is_the_mean_of_the_local_values(ranks):
    inputs = _inputs()
    locals_ = [_run(**_half(inputs, rank)) for rank in range(WORLD)]
    torch.testing.assert_close(sum(r["loss"] for r in ranks) / WORLD,
                               sum(local["loss"] for local in locals_) / WORLD)
    mean_grad = sum(local["w"] for local in locals_) / WORLD
    for result in ranks:
        torch.testing.assert_close(result["w_ddp"], mean_grad)


def test_it_is_not_the_full_batch_loss(ranks):
    """Mining on the global batch would give another value: the test above would notice a
    gather."""
    full = _run(**_inputs())["loss"]
    assert not torch.allclose(sum(r["loss"] for r in ranks) / WORLD, full)
