"""SPICE's label-free head selection (arXiv 2103.09382 §III-B, "the head with the lowest loss";
per epoch, as the authors' code does): after every epoch each head is scored by its own
double-softmax loss on the whole set, and the lowest (epoch, head) seen is kept. Unlike that
code, no checkpoint is ever chosen by ground-truth accuracy.

``selection_scores`` is the pure function; ``SpiceSelection`` the state
(``[state.NAME] type = "spice_selection"``), read by ``eval.assign = "head:heads@NAME"``.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from corekit import ComponentError, Need
from deepclust_spice.double_softmax import double_softmax_ce
from deepclust_spice.prototypes import default_sizes, prototype_pairs

if TYPE_CHECKING:
    from corekit import StageContext


def selection_scores(features: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Each head's score, lower is better (§III-B, arXiv 2103.09382): ``features`` (N, D)
    L2-normalised embeddings, ``probs`` (N, H, K) the heads' probabilities on un-augmented
    images. Head h labels the set with the prototype pairs of Eq. 2-4 at the set's own
    ``M = ⌊0.5⌊N/K⌋⌋``, ``N_s = ⌊N/K⌋`` (not a batch's: scores at other sizes do not compare),
    and scores the double-softmax CE (Eq. 5) of its own probabilities on those pairs. Permuting
    a head's clusters leaves its score as it is. Returns (H,)."""
    n, _, k = probs.shape
    m, n_s = default_sizes(n, k)
    scores = []
    for h in range(probs.shape[1]):
        index, label = prototype_pairs(features, probs[:, h], m, n_s)
        scores.append(double_softmax_ce(probs[index, h], label))
    return torch.stack(scores)


class SpiceSelection(nn.Module):
    """The head of the stacked part ``part`` with the lowest ``selection_scores`` over the
    stage, with the ``epoch`` it was selected after (the schedule's epochs trained then: the
    log's and ``metrics.jsonl``'s count unless a ``--budget`` compressed the schedule; 0 =
    before training), its ``score``, and a frozen copy
    of the network as it was then with that one head in place of the stack (``network``, the
    branch named after the state; the backbone's BatchNorm statistics as they were then, which
    ``freeze_bn = "train"`` lets drift, as in the authors' code).
    ``bank`` names the ``memory_bank`` state of embeddings. No label is read.

    (It keeps the core ``selection`` state's interface, ``part``, ``network``, ``index``,
    ``epoch``, ``score``, ``written``; it is not a subclass of it because the core does not
    export that class.)"""

    def __init__(self, network: nn.Module, part: str = "heads", bank: str = "bank") -> None:
        super().__init__()
        if part not in network.names():
            raise ComponentError(f"part {part!r} is not a part of the model; parts: "
                                 f"{network.names()}")
        if getattr(network.part(part), "stack", None) is None:
            raise ComponentError(f"part {part!r} is one head: select among the heads of a "
                                 "part with stack = H, e.g. type = 'spice_multi_head'")
        self.part, self.bank = part, bank
        self.network = _snapshot(network, part, 0)
        self.register_buffer("index", torch.tensor(-1))
        self.register_buffer("epoch", torch.tensor(-1))
        self.register_buffer("score", torch.tensor(float("inf")))
        self.history: list[dict[str, Any]] = []

    def needs(self) -> list[Need]:
        return [Need.output(self.part, reads="probs", stack=True),
                Need.state(self.bank, "memory_bank")]

    @property
    def written(self) -> bool:
        return int(self.index) >= 0

    def scores(self, ctx: StageContext) -> torch.Tensor:
        """(H,) scores of every head on the whole set, evaluation transform and mode."""
        probs = ctx.features(f"online:{self.part}").float()
        features = F.normalize(ctx.state[self.bank].read().float(), dim=1)
        return selection_scores(features.to(probs.device), probs)

    @torch.no_grad()
    def offer(self, scores: torch.Tensor, online: nn.Module, epoch: int) -> bool:
        """Keep the lowest of ``scores`` (H,) if it beats the record (a tie keeps the record)."""
        best = int(scores.argmin())
        score = scores[best].detach().float().to(self.score.device)
        self.history.append({"epoch": epoch, "scores": [round(float(s), 6) for s in scores]})
        if not bool(score < self.score):
            return False
        self.index.fill_(best)
        self.epoch.fill_(epoch)
        self.score.copy_(score)
        self.network.load_state_dict(_snapshot(online, self.part, best).state_dict())
        return True

    def on_epoch_end(self, ctx: StageContext) -> None:
        if self.offer(self.scores(ctx), ctx.model.online, ctx.epoch + 1):
            ctx.log(f"  spice selection: head {int(self.index)} after epoch {int(self.epoch)}, "
                    f"score {float(self.score):.6f}")

    def on_stage_end(self, ctx: StageContext) -> None:
        if ctx.epochs == 0 and not self.written:
            self.offer(self.scores(ctx), ctx.model.online, 0)
        record = {"part": self.part, "head": int(self.index), "epoch": int(self.epoch),
                  "score": float(self.score), "history": self.history,
                  "labels_read": False}
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        (ctx.out_dir / "selection.json").write_text(json.dumps(record, indent=1))


def _snapshot(online: nn.Module, part: str, index: int) -> nn.Module:
    """A frozen copy of ``online`` with head ``index`` of the stack ``part`` in its place."""
    copied = copy.deepcopy(online)
    copied.heads[part] = online.part(part).select(index)
    copied.frozen = frozenset(copied.names())
    copied.requires_grad_(False)
    return copied


def spice_selection(network: nn.Module, part: str = "heads", bank: str = "bank"
                    ) -> SpiceSelection:
    """``[state.NAME] type = "spice_selection"``, ``part`` the stacked heads, ``bank`` the
    embedding bank."""
    return SpiceSelection(network, part, bank)
