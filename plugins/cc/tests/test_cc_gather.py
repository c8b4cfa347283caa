"""CC's cluster losses on two gloo ranks equal the single-process loss of the whole batch.

Each rank holds half the batch; the losses gather both views' probabilities (cc.md P6), so every
rank computes the global value. A rank's input gradient is ``world_size ×`` its slice of the
full-batch gradient (``gather``'s backward sums every rank's gradient into each slice), and
DDP's mean over ranks of the parameter gradient gives back the single-process gradient.
"""

from __future__ import annotations

import pytest
import torch
from deepclust_cc.losses import ClusterContrast, ClusterLoss, cc_cluster_contrast, cc_cluster_loss

from corekit.testing import FakeStep, ddp_mean, rank_slice, run_on_ranks

WORLD = 2
N, D_IN, M = 8, 5, 3  # global batch, input width, clusters
LOSSES = {"contrast": (ClusterContrast, cc_cluster_contrast),
          "loss": (ClusterLoss, cc_cluster_loss)}


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"xa": torch.randn(N, D_IN, generator=g), "xb": torch.randn(N, D_IN, generator=g),
            "w": torch.randn(D_IN, M, generator=g)}


def _run(name: str, xa: torch.Tensor, xb: torch.Tensor, w: torch.Tensor,
         use_adapter: bool) -> dict[str, torch.Tensor]:
    """Loss ``name`` on probabilities ``softmax(x @ w)`` (``w`` stands in for the cluster head):
    value and gradients."""
    adapter, plain = LOSSES[name]
    xa, xb, w = xa.clone().requires_grad_(), xb.clone().requires_grad_(), w.clone().requires_grad_()
    ya, yb = (xa @ w).softmax(1), (xb @ w).softmax(1)
    step = FakeStep({("online", "cluster", 0): ya, ("online", "cluster", 1): yb})
    loss = adapter(head="cluster")(step) if use_adapter else plain(ya, yb)
    loss.backward()
    return {"loss": loss.detach(), "xa": xa.grad, "xb": xb.grad, "w": w.grad}


def _on_rank(rank: int, world: int, inputs: dict[str, torch.Tensor]) -> dict:
    mine = rank_slice(N, rank, world)
    out = {}
    for name in LOSSES:
        terms = _run(name, inputs["xa"][mine], inputs["xb"][mine], inputs["w"], use_adapter=True)
        terms["w_ddp"] = ddp_mean(terms["w"])  # DDP: the mean of the ranks' parameter gradients
        out[name] = terms
    return out


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    return run_on_ranks(_on_rank, WORLD, _inputs())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_adapter_equals_the_plain_function_on_one_process(name):
    inputs = _inputs()
    adapter, plain = _run(name, **inputs, use_adapter=True), _run(name, **inputs, use_adapter=False)
    for key, value in plain.items():
        torch.testing.assert_close(adapter[key], value)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_two_ranks_give_the_full_batch_loss_and_gradient(ranks, name):
    full = _run(name, **_inputs(), use_adapter=False)
    for rank, result in enumerate(ranks):
        terms = result[name]
        torch.testing.assert_close(terms["loss"], full["loss"])
        mine = rank_slice(N, rank, WORLD)
        torch.testing.assert_close(terms["xa"], WORLD * full["xa"][mine])
        torch.testing.assert_close(terms["xb"], WORLD * full["xb"][mine])
        torch.testing.assert_close(terms["w_ddp"], full["w"])
