"""IDFD / cIDFD on 2 gloo ranks × B/2 against one process on the global batch B (issue #32).

- Feature decorrelation normalises each feature column over the batch, so it gathers the
  batch (with gradient) and every rank computes the global value.
- The bank terms (instance discrimination, and cIDFD's contrastive form with the background
  bank) are per-sample means against the memory banks: each rank's value is its share's
  mean, the trainer's gradient mean gives back the one-process gradient, and the banks'
  momentum update gathers every rank's rows, so the banks stay the one-process banks.

Losses over the ranks and parameter gradients within rtol 1e-5, atol 1e-6
(``corekit.testing.synced``: the trainer's own ``average_gradients``).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from deepclust_cidfd.losses import (
    ContrastiveInstanceDiscrimination,
    FeatureDecorrelation,
    InstanceDiscrimination,
)
from torch.nn import functional as F

from corekit.state.memory_bank import MemoryBank
from corekit.testing import FakeStep, rank_slice, run_on_ranks, synced

WORLD = 2
B, D_IN, D, N = 8, 6, 4, 20  # global batch, input width, embedding width, data set size
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(B, D_IN, generator=g), "w": torch.randn(D_IN, D, generator=g),
            "background": F.normalize(torch.randn(B, D, generator=g), dim=1),
            "indices": torch.randperm(N, generator=g)[:B]}


def _bank(seed: int) -> MemoryBank:
    """A bank of N unit rows of width D (the same rows on every rank)."""
    network = SimpleNamespace(out_dim=lambda part: D)
    return MemoryBank(network, N, source="online:emb", dim=D,
                      generator=torch.Generator().manual_seed(seed))


def _decorrelation(x: torch.Tensor, w: torch.Tensor) -> dict:
    w = w.clone().requires_grad_()
    step = FakeStep({("online", "emb", 0): x @ w})
    return synced(FeatureDecorrelation(head="emb")(step), [w])


def _bank_terms(x: torch.Tensor, w: torch.Tensor, background: torch.Tensor,
                indices: torch.Tensor) -> dict:
    """Instance discrimination and cIDFD's contrastive form on the embeddings
    ``n̂(x @ w)`` of images ``indices`` against fresh banks, as a rank's optimizer sees
    them; then the banks after their momentum update from this step."""
    banks = {"bank_v": _bank(1), "bank_w": _bank(2)}
    out = {}
    for name, loss in (("id", InstanceDiscrimination(head="emb", bank="bank_v")),
                       ("ci", ContrastiveInstanceDiscrimination(head="emb",
                                                                background="background_emb"))):
        weight = w.clone().requires_grad_()
        emb = F.normalize(x @ weight, dim=1)
        step = FakeStep({("online", "emb", 0): emb,
                         ("online", "background_emb", 0): background})
        step.indices, step.state = indices, banks.__getitem__
        out[name] = synced(loss(step), [weight])
    step = SimpleNamespace(indices=indices, output=lambda *_: F.normalize(x @ w, dim=1))
    banks["bank_v"].after_optimizer_step(step)
    out["bank"] = banks["bank_v"].read().clone()
    return out


def _half(inputs: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    mine = rank_slice(B, rank, WORLD)
    return {key: value if key == "w" else value[mine] for key, value in inputs.items()}


def _on_rank(rank: int, world: int, inputs: dict[str, torch.Tensor]) -> dict:
    half = _half(inputs, rank)
    return {"fd": _decorrelation(half["x"], half["w"]), **_bank_terms(**half)}


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    return run_on_ranks(_on_rank, WORLD, _inputs())


def _assert_equal(got: dict, want: dict) -> None:
    torch.testing.assert_close(got["loss"], want["loss"], **TOLERANCE)
    for mine, reference in zip(got["grads"], want["grads"], strict=True):
        torch.testing.assert_close(mine, reference, **TOLERANCE)


def test_feature_decorrelation_on_two_ranks_equals_one_process(ranks):
    inputs = _inputs()
    one = _decorrelation(inputs["x"], inputs["w"])
    local = _decorrelation(**{k: v for k, v in _half(inputs, 0).items() if k in ("x", "w")})
    assert not torch.allclose(local["loss"], one["loss"]), "the halves alone would differ"
    for r in ranks:
        _assert_equal(r["fd"], one)


@pytest.mark.parametrize("name", ["id", "ci"])
def test_bank_terms_on_two_ranks_equal_one_process(ranks, name):
    one = _bank_terms(**_inputs())
    for r in ranks:
        _assert_equal(r[name], one[name])


def test_the_bank_update_is_the_one_process_update_on_both_ranks(ranks):
    one = _bank_terms(**_inputs())["bank"]
    for r in ranks:
        torch.testing.assert_close(r["bank"], one, rtol=0, atol=1e-7)
