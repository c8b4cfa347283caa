"""SPICE's MoCo InfoNCE on 2 gloo ranks × B/2 against one process on the global batch B
(issue #32).

``moco_infonce`` is a per-sample mean against the queue, which every rank holds alike (the
``queue`` state pushes the gathered keys: tests/core/test_torchrun_losses.py). Each rank's
value is its share's mean, and the trainer's gradient mean
(``corekit.distributed.average_gradients``) gives back the one-process gradient: the loss over
the ranks and the query encoder's gradient equal one process's within rtol 1e-5, atol 1e-6,
for 5 steps in a row with the keys pushed after each.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from deepclust_spice.moco import MocoInfoNCE
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


def _on_rank(rank: int, world: int, inputs: dict[str, torch.Tensor]) -> list[dict]:
    mine = rank_slice(B, rank, world)
    return _moco(inputs["query"][:, mine], inputs["key"][:, mine], inputs["w"])


@pytest.fixture(scope="module")
def ranks() -> list[list[dict]]:
    return run_on_ranks(_on_rank, WORLD, _inputs())


def test_moco_infonce_on_two_ranks_equals_one_process_for_five_steps(ranks):
    one = _moco(**_inputs())
    for r in ranks:
        for got, want in zip(r, one, strict=True):
            torch.testing.assert_close(got["loss"], want["loss"], **TOLERANCE)
            torch.testing.assert_close(got["grads"][0], want["grads"][0], **TOLERANCE)
