"""ProPos's losses on two gloo ranks.

PSL builds prototypes from the batch, so it gathers ``q``, ``k`` and the labels: on two ranks
with half the batch each it equals the single-process loss of the whole batch, on every rank,
even when a cluster is absent from one rank's half. ``gather``'s backward sums every rank's
gradient into each rank's slice, so a rank's input gradient is ``world_size ×`` its slice of
the full-batch gradient, and DDP's mean over ranks gives back the single-process parameter
gradient.

PSA is a per-sample mean and does not gather: each rank's value is its local mean, whose mean
over ranks is the full-batch value, and so is DDP's averaged gradient.
"""

from __future__ import annotations

import pytest
import torch
from deepclust_propos.losses import PSA, PSL

from corekit.testing import FakeStep, ddp_mean, rank_slice, run_on_ranks

WORLD = 2
N, D_IN, D, K = 8, 5, 4, 3  # global batch, input width, embedding width, clusters
LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])  # cluster 2 is absent from rank 0's half


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(2, N, D_IN, generator=g), "k": torch.randn(2, N, D, generator=g),
            "w": torch.randn(D_IN, D, generator=g), "labels": LABELS}


def _run(name: str, x: torch.Tensor, k: torch.Tensor, w: torch.Tensor,
         labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss ``name`` with student outputs ``x[v] @ w`` (``w`` stands in for the student) and
    teacher outputs ``k[v]`` on views v = 0, 1: value and gradients."""
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    head = "proj" if name == "psl" else "pred"
    outputs = {("online", head, v): x[v] @ w for v in range(2)}
    outputs |= {("target", "proj", v): k[v] for v in range(2)}
    loss_fn = PSL(n_clusters=K) if name == "psl" else PSA()
    loss = loss_fn(FakeStep(outputs, labels))
    loss.backward()
    return {"loss": loss.detach(), "x": x.grad, "w": w.grad}


def _half(inputs: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    mine = rank_slice(N, rank, WORLD)
    return {"x": inputs["x"][:, mine], "k": inputs["k"][:, mine], "w": inputs["w"],
            "labels": inputs["labels"][mine]}


def _on_rank(rank: int, world: int, inputs: dict[str, torch.Tensor]) -> dict:
    out = {}
    for name in ("psl", "psa"):
        terms = _run(name, **_half(inputs, rank))
        terms["w_ddp"] = ddp_mean(terms["w"])  # DDP: the mean of the ranks' parameter gradients
        out[name] = terms
    return out


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    return run_on_ranks(_on_rank, WORLD, _inputs())


def test_psl_on_two_ranks_is_the_full_batch_loss(ranks):
    full = _run("psl", **_inputs())
    for rank, result in enumerate(ranks):
        terms = result["psl"]
        torch.testing.assert_close(terms["loss"], full["loss"])
        torch.testing.assert_close(terms["x"], WORLD * full["x"][:, rank_slice(N, rank, WORLD)])
        torch.testing.assert_close(terms["w_ddp"], full["w"])


def test_psl_on_one_rank_would_differ():
    """The check above has teeth: the local halves give other values (cluster 2 is absent from
    rank 0's half)."""
    full = _run("psl", **_inputs())["loss"]
    for rank in range(WORLD):
        assert not torch.allclose(_run("psl", **_half(_inputs(), rank))["loss"], full)


def test_psa_stays_local_and_averages_to_the_full_batch(ranks):
    inputs = _inputs()
    full = _run("psa", **inputs)
    for rank, result in enumerate(ranks):
        local = _run("psa", **_half(inputs, rank))
        for key in ("loss", "x", "w"):
            torch.testing.assert_close(result["psa"][key], local[key])
        torch.testing.assert_close(result["psa"]["w_ddp"], full["w"])
    torch.testing.assert_close(sum(r["psa"]["loss"] for r in ranks) / WORLD, full["loss"])
