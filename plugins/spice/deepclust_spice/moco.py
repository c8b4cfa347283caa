"""SPICE's stage 1: MoCo-v2 instance contrast (arXiv 2103.09382 §III-A, with the settings of the
authors' code: T = 0.2, queue, shuffle-BN).

``moco_infonce`` is the pure loss; ``MocoInfoNCE`` reads a step (``[losses.NAME] type =
"moco_infonce"``) and computes its keys with shuffle-BN (``corekit.shuffled_forward``: across
the ranks under torchrun, emulated over sub-batches on one process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import torch
from torch.nn import functional as F

from corekit import Need, shuffled_forward

if TYPE_CHECKING:
    from corekit import Step


def moco_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
                 temperature: float = 0.2) -> torch.Tensor:
    """``logits = [q·k, q·z_1, …, q·z_Q] / T`` and cross-entropy with target 0, mean over the
    batch. ``q`` (B, d) queries, ``k`` (B, d) keys (no gradient), ``queue`` (Q, d) past keys;
    T = 0.2 in SPICE's code."""
    positive = (q * k.detach()).sum(dim=1, keepdim=True)
    negative = q @ queue.detach().to(q.dtype).T
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


@attrs.define
class MocoInfoNCE:
    """MoCo's InfoNCE between the online ``head`` on view ``query_view`` and the key encoder's
    (branch ``key_branch``, an EMA of backbone + projection) on ``key_view``, against the
    ``queue`` state's rows. The keys are computed with shuffle-BN over ``shuffle_chunks``
    sub-batches of the global batch (1: no shuffle; under torchrun at least one per rank, the
    images shuffled across the ranks) and handed to the step, so the queue pushes these same
    keys after the optimizer step."""

    head: str = "proj"
    queue: str = "queue"
    key_branch: str = "target"
    query_view: int | str = 0
    key_view: int | str = 1
    temperature: float = 0.2
    shuffle_chunks: int = 2

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="unit"),
                Need.output(self.head, self.key_branch, reads="unit"),
                Need.views([self.query_view, self.key_view]),
                Need.state(self.queue, "queue"),
                Need("spice_queue_batch", self.queue)]

    def keys(self, step: Step) -> torch.Tensor:
        """The keys (B, d): shuffle-BN over ``shuffle_chunks`` sub-batches of the key view."""
        if self.shuffle_chunks <= 1:
            return step.output(self.head, self.key_view, self.key_branch)
        network = step.model.network(self.key_branch)
        images = step.views[self._view_name(step, self.key_view)]
        keys = shuffled_forward(lambda x: network.compute(self.head, x, {}).float(), images,
                                self.shuffle_chunks)
        step.prefill(self.head, self.key_view, keys, branch=self.key_branch)
        return keys

    @staticmethod
    def _view_name(step: Step, view: int | str) -> int | str:
        names = list(step.views)
        return names[view] if isinstance(view, int) and view not in step.views else view

    def __call__(self, step: Step) -> torch.Tensor:
        q = step.output(self.head, self.query_view)
        k = self.keys(step)
        return moco_infonce(q, k, step.state(self.queue).read(), self.temperature)
