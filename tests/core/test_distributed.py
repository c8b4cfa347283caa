"""``corekit.distributed`` and the core's batch-level losses on real processes (gloo, CPU).

A loss that gathers over ranks must give, on every rank, the single-process value of the
global batch. Its gradient: ``gather``'s backward sums every rank's gradient into each rank's
own slice, and every rank computes the same global loss, so a rank's input gradient is
``world_size ×`` its slice of the full-batch gradient. DDP then *averages* parameter gradients
over ranks, which divides that factor out: the averaged parameter gradient is exactly the
single-process one. The tests assert both.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from corekit.components.losses import BatchMarginalEntropy, NTXent, marginal_entropy_gap, nt_xent
from corekit.distributed import all_reduce, gather, rank, world_size
from corekit.testing import FakeStep, ddp_mean, rank_slice, run_on_ranks

WORLD = 2
N, D_IN, D, M = 8, 5, 4, 3  # global batch, input width, embedding width, clusters


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"xa": torch.randn(N, D_IN, generator=g), "xb": torch.randn(N, D_IN, generator=g),
            "w_emb": torch.randn(D_IN, D, generator=g), "w_clu": torch.randn(D_IN, M, generator=g)}


def _losses(xa: torch.Tensor, xb: torch.Tensor, w_emb: torch.Tensor, w_clu: torch.Tensor,
            use_adapters: bool) -> dict[str, dict[str, torch.Tensor]]:
    """NT-Xent and the marginal entropy on inputs ``xa``, ``xb`` through the shared linear maps
    ``w_emb`` / ``w_clu`` (stand-ins for the network's parameters): value, input gradients,
    parameter gradient."""
    out = {}
    for name in ("nt_xent", "entropy"):
        xa_, xb_ = xa.clone().requires_grad_(), xb.clone().requires_grad_()
        if name == "nt_xent":
            w = w_emb.clone().requires_grad_()
            za, zb = xa_ @ w, xb_ @ w
            step = FakeStep({("online", "proj", 0): za, ("online", "proj", 1): zb})
            loss = NTXent(head="proj")(step) if use_adapters else nt_xent(za, zb)
        else:
            w = w_clu.clone().requires_grad_()
            ya, yb = (xa_ @ w).softmax(1), (xb_ @ w).softmax(1)
            step = FakeStep({("online", "cluster", 0): ya, ("online", "cluster", 1): yb})
            loss = (BatchMarginalEntropy(head="cluster")(step) if use_adapters
                    else marginal_entropy_gap(ya) + marginal_entropy_gap(yb))
        loss.backward()
        out[name] = {"loss": loss.detach(), "xa": xa_.grad, "xb": xb_.grad, "w": w.grad}
    return out


def _on_rank(r: int, world: int, inputs: dict[str, torch.Tensor]) -> dict:
    """Everything the 2-rank tests check, in one spawn."""
    result: dict = {"rank": rank(), "world_size": world_size()}

    # gather: rank order, and each rank's slice receives the sum of every rank's gradient
    x = torch.full((2, 3), float(r)).requires_grad_()
    gathered = gather(x)
    weights = torch.arange(world * 2 * 3, dtype=torch.float32).reshape(world * 2, 3)
    (gathered * weights * (r + 1)).sum().backward()
    result["gathered"] = gathered.detach()
    result["gather_grad"] = x.grad

    # the same read through a transpose, as CC's column contrast reads the gathered
    # probabilities (yᵀ): the gradient reaching gather is column-major
    x = torch.full((2, 3), float(r)).requires_grad_()
    (gather(x).T * weights.T.contiguous() * (r + 1)).sum().backward()
    result["gather_grad_transposed"] = x.grad

    # all_reduce: sum and mean, without gradient
    y = torch.tensor([1.0, 2.0]) * (r + 1)
    result["sum"] = all_reduce(y.requires_grad_(), "sum")
    result["mean"] = all_reduce(y, "mean")

    # the losses on this rank's half of the batch
    mine = rank_slice(N, r, world)
    losses = _losses(inputs["xa"][mine], inputs["xb"][mine], inputs["w_emb"], inputs["w_clu"],
                     use_adapters=True)
    for terms in losses.values():
        terms["w_ddp"] = ddp_mean(terms["w"])  # what DDP does to a parameter gradient: the mean
    result["losses"] = losses
    return result


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    return run_on_ranks(_on_rank, WORLD, _inputs())


def test_one_process_is_the_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert not dist.is_initialized()
    assert gather(x) is x
    assert all_reduce(x) is x
    assert all_reduce(x, "mean") is x
    assert (rank(), world_size()) == (0, 1)


def test_the_adapters_equal_the_plain_functions_on_one_process():
    inputs = _inputs()
    with_adapters = _losses(**inputs, use_adapters=True)
    plain = _losses(**inputs, use_adapters=False)
    for name, terms in plain.items():
        for key, value in terms.items():
            torch.testing.assert_close(with_adapters[name][key], value)


def test_run_on_ranks_gives_each_rank_its_rank(ranks):
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, WORLD), (1, WORLD)]


def test_gather_concatenates_in_rank_order(ranks):
    expected = torch.cat([torch.full((2, 3), float(r)) for r in range(WORLD)])
    for r in ranks:
        torch.testing.assert_close(r["gathered"], expected)


def test_gather_backpropagates_each_ranks_own_slice(ranks):
    # rank s's loss is sum(gathered · weights · (s+1)); rank r's input receives
    # Σ_s (s+1)·weights[slice r] = 3·weights[slice r] for two ranks.
    weights = torch.arange(WORLD * 2 * 3, dtype=torch.float32).reshape(WORLD * 2, 3)
    total = sum(s + 1 for s in range(WORLD))
    for r, result in enumerate(ranks):
        torch.testing.assert_close(result["gather_grad"], total * weights[2 * r:2 * r + 2])


def test_gather_backpropagates_a_non_contiguous_gradient(ranks):
    weights = torch.arange(WORLD * 2 * 3, dtype=torch.float32).reshape(WORLD * 2, 3)
    total = sum(s + 1 for s in range(WORLD))
    for r, result in enumerate(ranks):
        torch.testing.assert_close(result["gather_grad_transposed"],
                                   total * weights[2 * r:2 * r + 2])


def test_all_reduce_sums_and_averages(ranks):
    for r in ranks:
        torch.testing.assert_close(r["sum"], torch.tensor([3.0, 6.0]))
        torch.testing.assert_close(r["mean"], torch.tensor([1.5, 3.0]))
        assert not r["sum"].requires_grad


@pytest.mark.parametrize("name", ["nt_xent", "entropy"])
def test_two_ranks_give_the_full_batch_loss(ranks, name):
    full = _losses(**_inputs(), use_adapters=False)[name]
    for r, result in enumerate(ranks):
        terms = result["losses"][name]
        torch.testing.assert_close(terms["loss"], full["loss"])
        mine = rank_slice(N, r, WORLD)
        # input gradient: world_size × the full-batch slice (gather sums every rank's copy)
        torch.testing.assert_close(terms["xa"], WORLD * full["xa"][mine])
        torch.testing.assert_close(terms["xb"], WORLD * full["xb"][mine])
        # parameter gradient after DDP's mean over ranks: the single-process gradient
        torch.testing.assert_close(terms["w_ddp"], full["w"])
