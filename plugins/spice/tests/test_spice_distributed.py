"""SPICE's MoCo InfoNCE on 2 gloo ranks × B/2 against one process on the global batch B
(issue #32).

``moco_infonce`` is a per-sample mean against the queue, which every rank holds alike (the
``queue`` state pushes the gathered keys: tests/core/test_torchrun_losses.py). Each rank's
value is its share's mean, and the trainer's gradient mean
(``corekit.distributed.average_gradients``) gives back the one-process gradient: the loss over
the ranks and the query encoder's gradient equal one process's within rtol 1e-5, atol 1e-6,
for 5 steps in a row with the keys pushed after each.

MoCo's shuffle-BN across the ranks (``corekit.shuffled_forward``): the key encoder (BatchNorm in
training mode) sees the global batch shuffled by rank 0's permutation, a slice per rank, and
each rank's keys equal its rows of one process's keys computed by definition with the same
permutation, one BatchNorm group per rank.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from deepclust_spice.moco import MocoInfoNCE
from torch import nn
from torch.nn import functional as F

from corekit.state.queue import Queue
from corekit.testing import FakeStep, rank_slice, run_on_ranks, synced

WORLD = 2
STEPS, B, D_IN, D, QUEUE = 5, 8, 6, 4, 16  # steps, global batch, input width, key width, rows
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def _inputs() -> dict[str, torch.Tensor]:
    """Query and key inputs of STEPS global batches (STEPS, B, D_IN) and the query encoder's
    weight (D_IN, D)."""
    g = torch.Generator().manual_seed(0)
    return {"query": torch.randn(STEPS, B, D_IN, generator=g),
            "key": torch.randn(STEPS, B, D, generator=g),
            "w": torch.randn(D_IN, D, generator=g)}


def _moco(query: torch.Tensor, key: torch.Tensor, w: torch.Tensor) -> list[dict]:
    """Each step's loss and ``w``'s gradient as a rank's optimizer sees them, the step's keys
    pushed into the queue after it (as the trainer's ``after_optimizer_step`` does)."""
    network = SimpleNamespace(out_dim=lambda part: D)
    queue = Queue(network, QUEUE, source="target:proj",
                  generator=torch.Generator().manual_seed(1))
    loss = MocoInfoNCE(head="proj", shuffle_chunks=1)
    steps = []
    for q_in, k_in in zip(query, key, strict=True):
        weight = w.clone().requires_grad_()
        keys = F.normalize(k_in, dim=1)
        step = FakeStep({("online", "proj", 0): F.normalize(q_in @ weight, dim=1),
                         ("target", "proj", 1): keys, ("target", "proj", 0): keys})
        step.state = {"queue": queue}.__getitem__
        steps.append(synced(loss(step), [weight]))
        queue.after_optimizer_step(step)
    return steps


SHUFFLE_SEED = 11  # rank 0's global RNG seed before the keys' permutation is drawn


def _key_encoder() -> nn.Module:
    """A key encoder (B, D_IN) → (B, D) whose BatchNorm (training mode) makes each key depend
    on the sub-batch it is encoded in."""
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(D_IN, D), nn.BatchNorm1d(D)).train()


def _shuffled_keys(images: torch.Tensor, chunks: int, rank: int = 0) -> dict[str, torch.Tensor]:
    """``MocoInfoNCE.keys`` (shuffle-BN over ``chunks``) of ``images`` as the key view of a
    step, the global RNG seeded SHUFFLE_SEED + ``rank`` (each rank draws its own, as under
    torchrun); the keys and what the step was handed to push into the queue."""
    encoder = _key_encoder()
    prefilled = {}
    step = SimpleNamespace(
        model=SimpleNamespace(network=lambda branch: SimpleNamespace(
            compute=lambda name, x, cache: encoder(x))),
        views={0: torch.zeros_like(images), 1: images},
        prefill=lambda name, view, keys, branch: prefilled.update(keys=keys))
    torch.manual_seed(SHUFFLE_SEED + rank)
    keys = MocoInfoNCE(shuffle_chunks=chunks).keys(step)
    return {"keys": keys, "pushed": prefilled["keys"]}


def _reference_keys(images: torch.Tensor, groups: int) -> torch.Tensor:
    """Shuffle-BN by definition on one process: ``images`` (B, D_IN) permuted by the
    permutation seeded SHUFFLE_SEED, cut into ``groups`` equal sub-batches encoded one at a
    time, the keys (B, D) put back in the images' order."""
    encoder = _key_encoder()
    torch.manual_seed(SHUFFLE_SEED)
    order = torch.randperm(len(images))
    keys = torch.empty(len(images), D)
    keys[order] = torch.cat([encoder(part) for part in images[order].chunk(groups)])
    return keys


def _key_images() -> torch.Tensor:
    return torch.randn(B, D_IN, generator=torch.Generator().manual_seed(4))


def _on_rank(rank: int, world: int, inputs: dict[str, torch.Tensor]) -> dict:
    mine = rank_slice(B, rank, world)
    return {"moco": _moco(inputs["query"][:, mine], inputs["key"][:, mine], inputs["w"]),
            "shuffled": _shuffled_keys(_key_images()[mine], WORLD, rank)}


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    return run_on_ranks(_on_rank, WORLD, _inputs())


def test_moco_infonce_on_two_ranks_equals_one_process_for_five_steps(ranks):
    one = _moco(**_inputs())
    for r in ranks:
        for got, want in zip(r["moco"], one, strict=True):
            torch.testing.assert_close(got["loss"], want["loss"], **TOLERANCE)
            torch.testing.assert_close(got["grads"][0], want["grads"][0], **TOLERANCE)


def test_shuffle_bn_across_two_ranks_equals_one_process_with_the_same_permutation(ranks):
    """Each rank's keys are its rows of the one-process keys, two BatchNorm groups of the
    shuffled global batch (one per rank); the step is handed the same keys for the queue."""
    want = _reference_keys(_key_images(), WORLD)
    unshuffled = _key_encoder()(_key_images()[rank_slice(B, 0, WORLD)])
    assert not torch.allclose(want[rank_slice(B, 0, WORLD)], unshuffled, **TOLERANCE)
    for rank, r in enumerate(ranks):
        mine = rank_slice(B, rank, WORLD)
        torch.testing.assert_close(r["shuffled"]["keys"], want[mine], **TOLERANCE)
        assert r["shuffled"]["pushed"] is r["shuffled"]["keys"]


def test_shuffle_bn_on_one_process_is_the_same_shuffle_over_sub_batches():
    got = _shuffled_keys(_key_images(), 2)
    torch.testing.assert_close(got["keys"], _reference_keys(_key_images(), 2), **TOLERANCE)
