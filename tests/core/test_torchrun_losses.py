"""Issue #32: the core's queue and FixMatch-style loss on 2 gloo ranks × B/2 against one
process on the global batch B.

- The ``queue`` state pushes the gathered keys of the global batch: after 5 steps its rows and
  pointer are the one-process queue's, on both ranks.
- ``cross_entropy`` with ``confidence_threshold`` targets and ``reduction = "batch"`` (FixMatch,
  Sohn et al. Eq. 4) is a per-sample mean over the batch: each rank's value is its share's mean,
  and the trainer's gradient mean (``corekit.distributed.average_gradients``) gives back the
  one-process gradient. Its loss over the ranks and its parameter gradient equal one process's
  within rtol 1e-5, atol 1e-6 (``corekit.testing.synced``).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from corekit.components.losses import TargetCrossEntropy
from corekit.components.pseudo_labelers import ConfidenceThreshold
from corekit.state.queue import Queue
from corekit.testing import FakeStep, rank_slice, run_on_ranks, synced

WORLD = 2
B, D_IN, D, K = 8, 5, 4, 3  # global batch, input width, key width, clusters
STEPS, QUEUE = 5, 12  # pushes, queue rows (not a multiple of B: the pointer wraps mid-batch)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def _keys() -> torch.Tensor:
    """The keys of 5 global batches, (STEPS, B, D)."""
    return torch.randn(STEPS, B, D, generator=torch.Generator().manual_seed(1))


def _queue_after(keys: torch.Tensor) -> dict[str, torch.Tensor]:
    """A queue of QUEUE rows after one push per step of ``keys`` (STEPS, b, D), pushed as the
    trainer pushes them (``after_optimizer_step`` reading the step's ``online:proj``)."""
    network = SimpleNamespace(out_dim=lambda part: D)
    queue = Queue(network, QUEUE, generator=torch.Generator().manual_seed(2))
    for batch in keys:
        queue.after_optimizer_step(SimpleNamespace(output=lambda *_, b=batch: b))
    return {"rows": queue.rows.clone(), "ptr": queue.ptr.clone()}


def _fixmatch_inputs() -> dict[str, torch.Tensor]:
    """A weak and a strong view's inputs (B, D_IN) and a cluster head's weight (D_IN, K),
    scaled so that some but not all weak predictions pass the 0.95 threshold."""
    g = torch.Generator().manual_seed(0)
    return {"weak": 3 * torch.randn(B, D_IN, generator=g),
            "strong": torch.randn(B, D_IN, generator=g),
            "w": 2 * torch.randn(D_IN, K, generator=g)}


def _fixmatch(weak: torch.Tensor, strong: torch.Tensor, w: torch.Tensor) -> dict:
    """``cross_entropy`` (reduction "batch") of the strong view's logits against the confident
    labels of the weak view's probabilities; the loss and ``w``'s gradient as a rank's
    optimizer sees them, and how many weak predictions were confident."""
    w = w.clone().requires_grad_()
    outputs = {("online", "probs", 0): (weak @ w).softmax(1), ("online", "logits", 1): strong @ w}
    labeler = ConfidenceThreshold(head="probs", threshold=0.95, view=0)
    step = FakeStep(outputs, labelers={"confident": labeler}, kinds={"probs": "probs"})
    loss = TargetCrossEntropy(head="logits", targets="confident", view=1, reduction="batch")
    out = synced(loss(step), [w])
    out["confident"] = int(step.targets("confident").mask.sum())
    return out


def _on_rank(rank: int, world: int) -> dict:
    mine = rank_slice(B, rank, world)
    fixmatch = {name: value[mine] if name != "w" else value
                for name, value in _fixmatch_inputs().items()}
    return {"queue": _queue_after(_keys()[:, mine]), "fixmatch": _fixmatch(**fixmatch)}


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    return run_on_ranks(_on_rank, WORLD)


def test_queue_after_five_pushes_is_the_one_process_queue_on_both_ranks(ranks):
    one = _queue_after(_keys())
    assert int(one["ptr"]) == STEPS * B % QUEUE
    for r in ranks:
        assert torch.equal(r["queue"]["ptr"], one["ptr"])
        torch.testing.assert_close(r["queue"]["rows"], one["rows"], rtol=0, atol=1e-7)


def test_fixmatch_loss_and_gradient_on_two_ranks_equal_one_process(ranks):
    one = _fixmatch(**_fixmatch_inputs())
    assert 0 < one["confident"] < B, "the threshold should keep some images, not all"
    assert sum(r["fixmatch"]["confident"] for r in ranks) == one["confident"]
    for r in ranks:
        torch.testing.assert_close(r["fixmatch"]["loss"], one["loss"], **TOLERANCE)
        torch.testing.assert_close(r["fixmatch"]["grads"][0], one["grads"][0], **TOLERANCE)

