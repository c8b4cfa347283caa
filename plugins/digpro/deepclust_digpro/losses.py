"""DigPro's one new loss: dynamic grouping (L_group, Eqs. 3-6 of arXiv 2401.13581), with its
momentum groups as the loss's own state, the periodic group reset and the code's extra EMA
update as its ``on_step_start`` lifecycle hook.

L_base and L_proto are ProPos's PSA and PSL (identical code); ``deepclust_digpro.plugin``
registers the ``deepclust_propos`` classes under DigPro's names.
"""

from __future__ import annotations

from typing import Literal

import torch
from deepclust_propos import symmetric, teacher_embedding
from torch import nn

from corekit import ComponentError, Need, NeedContext, Step, on_main
from deepclust_digpro.grouping import (
    LabelBranch,
    dynamic_grouping,
    is_reset_step,
    kmeans_groups,
)

Query = Literal["predictor", "projector"]
WIDTH_NEED = "digpro_group_width"


class DynamicGrouping(nn.Module):
    """L_group = ½[L_group(a→b) + L_group(b→a)] (DigPro Eqs. 3-6 in the official code's
    semantics), with the K momentum groups ``G`` (buffer ``groups``, K×D) as
    this loss's own state: checkpointed with the loss, never stepped by the optimizer.

    Per direction (student view s, teacher view t) it reads the raw online projection
    ``proj`` of view s (q, B×D, grad), the clean prediction ``pred`` of view s (p = g(q),
    B×D, grad; the recipe's ``pred_clean`` head shares the predictor's module) and the
    unit target embedding ``target`` of view t (k, no grad), and calls
    :func:`~deepclust_digpro.grouping.dynamic_grouping`; then ``G ← stopgrad(G')`` *before*
    the second direction, so the groups move twice per step.

    Where the paper and the official code disagree, this follows the code: the query is the
    clean prediction, not Eq. 3's projection; the labels come from the target branch, not
    Eq. 6's online feature; the groups move inside each direction before the logits, with
    gradient, not once after the losses as in Algorithm 1; the update averages the raw
    projections and never renormalises.

    Options (defaults = the code):

    - ``beta`` = β (0.99), ``temperature`` = τ_g (0.1);
    - ``pred``: the query head. ``"pred_clean"`` is the clean ``g(q)`` of the code; pointing it
      at the noisy ``"pred"`` feeds L_group the noisy prediction (an O(σ) deviation);
    - ``query = "projector"`` uses q itself as the query (Eq. 3 literal);
    - ``update_before_logits = False``: logits with the old groups, Algorithm 1's order;
    - ``label_branch = "online"``: labels from the online projection, Eq. 6 literal;
    - ``dim``: the width D of the groups, which must equal the widths of ``proj``, ``pred`` and
      the target's ``target`` (checked when the recipe is composed; 256 in the paper).

    Group state: init ``U[0, 1)^{K×D}``, not normalised (the code's), drawn from
    a generator seeded with ``seed`` or, with ``seed`` unset, from the run's torch RNG (which
    the engine seeds with ``train.seed`` before composing, so ``--seeds`` varies it).
    At the start of step ``n`` (``on_step_start``), if ``n > 1`` and ``n mod R = 0``
    (``reset_every`` = R, default K; 0 never resets) the groups are reset to the L2-normalised
    scikit-learn k-means centres of the rows of the queue state ``bank`` (seeded with a
    per-run seed plus ``n``, the code's is unseeded). On every other step the
    ``ema`` state (the target) takes the code's extra update
    ``φ ← m'·φ + (1 − m')·θ`` with ``m' = extra_momentum`` (0.99) before any loss runs; the
    target's own 0.996 update follows before backward (``update_at = "before_backward"`` in
    the recipe), so the effective momentum is 0.99 × 0.996 = 0.98604 per normal step and 0.996
    on reset steps (the code's). ``extra_momentum = 1.0`` (or ``None`` from
    Python) disables it (the paper's α = 0.996 alone); ``skip_extra_on_reset = false`` applies
    it on reset steps too.

    Local batch only, as the authors' code: each rank moves ``G`` on its own
    share of the batch. Under torchrun rank 0's groups are broadcast after each commit and
    each reset (the reset's k-means runs on rank 0 alone), so every rank holds the same ``G``;
    on one process nothing changes.
    """

    def __init__(
        self,
        *,
        n_clusters: int,
        pred: str = "pred_clean",
        proj: str = "proj",
        target: str = "proj",
        beta: float = 0.99,
        temperature: float = 0.1,
        update_before_logits: bool = True,
        label_branch: LabelBranch = "target",
        query: Query = "predictor",
        dim: int = 256,
        bank: str = "bank",
        reset_every: int | None = None,
        reset_n_init: int = 1,
        ema: str = "target",
        extra_momentum: float | None = 0.99,
        skip_extra_on_reset: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if label_branch not in ("target", "online"):
            raise ValueError(f"label_branch must be 'target' or 'online', got {label_branch!r}")
        if query not in ("predictor", "projector"):
            raise ValueError(f"query must be 'predictor' or 'projector', got {query!r}")
        if extra_momentum is not None and not 0.0 <= extra_momentum <= 1.0:
            raise ValueError(f"extra_momentum must be in [0, 1], got {extra_momentum}")
        if reset_every is not None and reset_every < 0:
            raise ValueError(f"reset_every must be >= 0, got {reset_every}")
        if n_clusters < 1 or dim < 1:
            raise ValueError(f"n_clusters and dim must be >= 1, got {n_clusters}, {dim}")
        self.n_groups = n_clusters
        self.pred, self.proj, self.target = pred, proj, target
        self.beta, self.temperature = beta, temperature
        self.update_before_logits = update_before_logits
        self.label_branch: LabelBranch = label_branch
        self.query: Query = query
        self.dim = dim
        self.bank = bank
        self.reset_every = n_clusters if reset_every is None else reset_every
        self.reset_n_init = reset_n_init
        self.ema = ema
        self.extra_momentum = extra_momentum
        self.skip_extra_on_reset = skip_extra_on_reset
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.register_buffer("groups", torch.rand(n_clusters, dim, generator=generator))
        reset_seed = torch.randint(0, 2**31 - 1, (), generator=generator)
        self.register_buffer("reset_seed", reset_seed)
        self.commits = 0
        self.resets = 0
        self.last_step: int | None = None  # the schedule step of the last on_step_start

    @property
    def extra_ema(self) -> bool:
        """Whether the extra pre-forward EMA update is on (``extra_momentum`` not 1 or None)."""
        return self.extra_momentum is not None and self.extra_momentum != 1.0

    def needs(self) -> list[Need]:
        reads = [self.proj] + ([self.pred] if self.query == "predictor" else [])
        needs = [Need.output(name, reads="embedding") for name in reads]
        needs.append(Need.output(self.target, "target", reads="embedding"))
        needs.append(Need.views(2))
        needs += [Need(WIDTH_NEED, name, count=self.dim) for name in reads]
        needs.append(Need(WIDTH_NEED, self.target, "target", count=self.dim))
        if self.reset_every:
            needs.append(Need.state(self.bank, "queue"))
        if self.extra_ema:
            needs.append(Need.state(self.ema, "ema"))
        return needs

    # -- the loss ---------------------------------------------------------------------------
    def commit(self, new_groups: torch.Tensor) -> None:
        """``G ← stopgrad(G')`` (before the next direction); rank 0's under torchrun."""
        self.groups = on_main(lambda: new_groups.detach().to(self.groups.dtype), self.groups,
                              tuple(self.groups.shape))
        self.commits += 1

    def direction(self, step: Step, student: int, teacher: int) -> torch.Tensor:
        """L_group of one direction on the current groups, committing ``G'`` afterwards."""
        q = step.output(self.proj, student)
        k = teacher_embedding(step, self.target, teacher)
        p = step.output(self.pred, student) if self.query == "predictor" else q
        loss, new_groups = dynamic_grouping(
            q, k, p, self.groups, self.beta, self.temperature,
            update_before_logits=self.update_before_logits, label_branch=self.label_branch)
        self.commit(new_groups)
        return loss

    def forward(self, step: Step) -> torch.Tensor:
        return symmetric(lambda s, t: self.direction(step, s, t))

    # -- the step hook: reset or extra EMA --------------------------------------------------
    def reset(self, rows: torch.Tensor, step: int) -> None:
        """``G ← n̂(KMeans_K(rows))`` from the bank rows (M×D), seeded by run and step; run
        on rank 0 and broadcast under torchrun."""
        if rows.shape[1] != self.dim:
            raise ComponentError(f"digpro_dynamic_grouping: bank {self.bank!r} rows are "
                                 f"{rows.shape[1]}-wide, the groups {self.dim}-wide")
        seed = int(self.reset_seed) + step
        self.groups = on_main(
            lambda: kmeans_groups(rows, self.n_groups, seed, self.reset_n_init).to(
                self.groups.device, self.groups.dtype),
            self.groups, tuple(self.groups.shape))
        self.resets += 1

    def on_step_start(self, step: Step) -> None:
        """At a reset step the groups are re-seated on the bank (and, by default, the extra
        EMA is skipped; the target is not re-copied, as in the code); otherwise the
        target takes the extra ``extra_momentum`` update."""
        resetting = is_reset_step(step.global_step, self.reset_every, self.last_step)
        self.last_step = step.global_step
        if resetting:
            self.reset(step.state(self.bank).read(), step.global_step)
        if self.extra_ema and not (resetting and self.skip_extra_on_reset):
            step.state(self.ema).update(step.model.online, float(self.extra_momentum))

    def extra_repr(self) -> str:
        return (f"groups={self.n_groups}, dim={self.dim}, beta={self.beta}, "
                f"temperature={self.temperature}, reset_every={self.reset_every}, "
                f"extra_momentum={self.extra_momentum}")


def check_group_width(need: Need, ctx: NeedContext) -> str | None:
    """Need kind ``digpro_group_width``: part ``need.name`` on ``need.branch`` is
    ``need.count`` wide (the groups' width ``dim``). Missing parts are the output need's
    problem, not this one's."""
    network = ctx.branches.get(need.branch)
    if network is None or need.name not in network.names():
        return None
    width = network.out_dim(need.name)
    if width != need.count:
        return (f"has dim = {need.count} (the width of its groups) but {need.branch}:"
                f"{need.name} is {width} wide: set the loss's dim = {width}")
    return None
