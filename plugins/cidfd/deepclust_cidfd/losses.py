"""IDFD's two losses and cIDFD's contrastive instance discrimination (Eqs. 1-5, arXiv 2408.04891).

Each loss is a plain tensor function plus a small adapter that reads its inputs from a
``corekit.Step`` and declares them in ``needs()``. Written from the papers' equations (the
IDFD reference code is under an evaluation-only licence and was not used).

Conventions shared by all three:

- embeddings are L2-normalised rows (the ``linear_l2`` head, ``produces = "unit"``);
- memory banks are read without gradient, and the logits use the bank *before* this step's
  momentum update (the core's ``memory_bank`` updates after the optimizer step);
- the reduction is the mean over the batch (the papers write sums: a constant factor on the
  effective learning rate);
- logits are formed in float32 with autocast off, so a small ``τ_xb`` cannot overflow in fp16.
"""

from __future__ import annotations

import math

import attrs
import torch
from torch.nn import functional as F

from corekit import Need, NeedContext, Step, gather

BANK_SOURCE = "cidfd_bank_source"
"""Need kind: the memory bank a loss reads is fed by the output the loss contrasts with it."""


def _no_autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


def instance_discrimination(q: torch.Tensor, indices: torch.Tensor, bank: torch.Tensor,
                            temperature: float = 1.0) -> torch.Tensor:
    """``L_ID`` (cIDFD Eq. 1-2 with τ_b, arXiv 2408.04891; IDFD's L_I).

    ``q`` (B, d): unit rows with gradient; ``indices`` (B,) int64 dataset indices; ``bank``
    (S, d): one row per dataset image (S = dataset size), read without gradient.

    ``ℓ = q K̄ᵀ / τ`` (B, S) is a softmax over **all** S bank rows (no NCE sampling) and
    ``L_ID = mean_i [logsumexp_j ℓ_ij − ℓ_{i, idx_i}]``. This is the bank form, not the
    literal text: the positive is the bank copy of the same image (the EMA of its earlier
    views), not the literal Eq. 2's ``q_i·q_i = 1``; Eq. 2's denominator runs over the whole
    bank, not a minibatch; the batch sum is a mean.
    """
    with _no_autocast(q.device):
        logits = q.float() @ bank.detach().float().t() / temperature
        return F.cross_entropy(logits, indices)


def feature_decorrelation(q: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """``L_FD`` (cIDFD Eq. 3, arXiv 2408.04891; IDFD's L_F).

    ``q`` (B, d): the batch embeddings (not the bank). Each feature column is normalised over
    the batch, ``f̂_l = q[:, l] / ‖q[:, l]‖₂`` (as in IDFD's code; absent from the formulas, kept
    so that ``G_ll`` does not scale with B); ``G = F̂ᵀF̂ / τ₂`` (d, d) and
    ``L_FD = mean_l [logsumexp_j G_lj − G_ll]``: a d-way softmax in which every feature
    dimension must recognise itself (cross-entropy of G's rows against the identity).
    """
    with _no_autocast(q.device):
        columns = F.normalize(q.float(), dim=0)
        gram = columns.t() @ columns / temperature
        return F.cross_entropy(gram, torch.arange(gram.shape[0], device=gram.device))


def contrastive_instance_discrimination(v: torch.Tensor, w: torch.Tensor,
                                        indices: torch.Tensor, bank_v: torch.Tensor,
                                        bank_w: torch.Tensor, tau_x: float = 1.0,
                                        tau_xb: float | None = 1.0) -> torch.Tensor:
    """``L_CI`` (cIDFD Eq. 4-5, arXiv 2408.04891, bank form).

    ``v`` (B, d_v): target-encoder unit rows with gradient; ``w`` (B, d_w): the frozen
    background encoder's unit rows on the same view, detached here; ``indices`` (B,) target
    indices; ``bank_v`` (N, d_v) and ``bank_w`` (N, d_w) the two target-set banks. d_v and
    d_w may differ: only the dot products ``v·V̄`` and ``w·W̄`` are used.

    The paper's ``−log[α_ii e^{s_ii/τ_x} / Σ_j α_ij e^{s_ij/τ_x}]`` with
    ``α_ij = exp(a_ij/τ_xb)`` is evaluated as one cross-entropy on the summed logits
    ``ℓ_ij = (v_i·V̄_j)/τ_x + (w_i·W̄_j)/τ_xb`` (B, N), i.e. ``log α`` is added to the logit and
    ``α`` itself is never formed (it overflows for small τ_xb). Mean over the batch.

    ``tau_xb = None`` or ``inf`` drops the background term: the result is exactly
    :func:`instance_discrimination` with ``τ = τ_x`` (IDFD). Gradient reaches only ``v``.
    """
    with _no_autocast(v.device):
        logits = v.float() @ bank_v.detach().float().t() / tau_x
        if tau_xb is not None and math.isfinite(tau_xb):
            logits = logits + w.detach().float() @ bank_w.detach().float().t() / tau_xb
        return F.cross_entropy(logits, indices)


def _bank_source_need(bank: str, head: str) -> Need:
    """A ``cidfd_bank_source`` need: state ``bank`` must be fed by ``online:head``. The
    expected source travels in the need's ``type`` field (the core's ``Need`` has no free
    field for it)."""
    return Need(BANK_SOURCE, bank, type=f"online:{head}")


def check_bank_source(need: Need, ctx: NeedContext) -> str | None:
    """Checker of the ``cidfd_bank_source`` need kind: the bank is fed by the part the loss
    contrasts with it (a bank fed by another head would train silently and wrongly). A missing
    state is reported by the loss's ``state`` need, so it passes here."""
    state = ctx.state.get(need.name)
    if state is None or not hasattr(state, "part"):
        return None
    fed = f"{getattr(state, 'branch', 'online')}:{state.part}"
    if fed != need.type:
        return (f"reads memory bank {need.name!r} as the bank of {need.type}, but the bank is "
                f"fed by {fed}: set state.{need.name}.source = {need.type!r}")
    return None


@attrs.define
class InstanceDiscrimination:
    """``L_ID`` on head ``head`` (unit rows, view ``view``) against the memory bank state
    ``bank`` (cIDFD Eqs. 1-2); τ = 1 (IDFD code and paper). Registered as
    ``instance_discrimination`` (aliases ``idfd_instance_discrimination``, ``idfd_id``)."""

    head: str = "emb"
    bank: str = "bank"
    temperature: float = 1.0
    view: int = 0

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="unit"), Need.views(self.view + 1),
                Need.state(self.bank, "memory_bank"), _bank_source_need(self.bank, self.head)]

    def __call__(self, step: Step) -> torch.Tensor:
        return instance_discrimination(step.output(self.head, self.view), step.indices,
                                       step.state(self.bank).read(), self.temperature)


@attrs.define
class FeatureDecorrelation:
    """``L_FD`` on the batch of head ``head`` (view ``view``), τ₂ = 2 (cIDFD Eq. 3).
    Registered as ``feature_decorrelation`` (aliases ``idfd_feature_decorrelation``,
    ``idfd_fd``).

    A batch-level loss: the batch is gathered over ranks (with gradient) first, so the column
    normalisation sees the global batch (the identity on one process)."""

    head: str = "emb"
    temperature: float = 2.0
    view: int = 0

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="embedding"), Need.views(self.view + 1)]

    def __call__(self, step: Step) -> torch.Tensor:
        return feature_decorrelation(gather(step.output(self.head, self.view)),
                                     self.temperature)


@attrs.define
class ContrastiveInstanceDiscrimination:
    """``L_CI`` (cIDFD Eqs. 4-5): target head ``head`` against bank ``bank_v``, reweighted
    by the frozen background head ``background`` against bank ``bank_w``, both on view
    ``view`` (the same augmented tensor, cIDFD Alg. 1 line 13). Registered as
    ``contrastive_instance_discrimination`` (alias ``cidfd_ci``).

    τ_x = τ_xb = 1 are this toolkit's defaults (the paper publishes no temperature);
    ``tau_xb = inf`` in a recipe (TOML ``inf``) gives IDFD's ``L_ID``. The background output
    is detached; list its parts in ``train.freeze`` so that the core runs them in eval mode
    without gradient.

    Where this departs from the paper's text: its Eq. 4 read literally has the constant
    positive ``s_ii = v_i·v_i = 1`` and ``α_ii = exp(1/τ_xb)``; here both come from the banks
    (``v_i·V̄_i``, ``w_i·W̄_i``), and the batch sum is a mean. ``background_view`` (default:
    ``view``) is a toolkit option: by default both encoders read the same view (Alg. 1
    line 13, the same augmented tensor); separate views are ``augment.views = 2``,
    ``background_view = 1`` and the ``bank_w`` state's ``view = 1``.
    """

    head: str = "emb"
    background: str = "background_emb"
    bank_v: str = "bank_v"
    bank_w: str = "bank_w"
    tau_x: float = 1.0
    tau_xb: float | None = 1.0
    view: int = 0
    background_view: int | None = None

    def _background_view(self) -> int:
        return self.view if self.background_view is None else self.background_view

    def needs(self) -> list[Need]:
        views = max(self.view, self._background_view()) + 1
        return [Need.output(self.head, reads="unit"), Need.output(self.background, reads="unit"),
                Need.views(views), Need.state(self.bank_v, "memory_bank"),
                Need.state(self.bank_w, "memory_bank"),
                _bank_source_need(self.bank_v, self.head),
                _bank_source_need(self.bank_w, self.background)]

    def __call__(self, step: Step) -> torch.Tensor:
        return contrastive_instance_discrimination(
            step.output(self.head, self.view),
            step.output(self.background, self._background_view()),
            step.indices, step.state(self.bank_v).read(), step.state(self.bank_w).read(),
            self.tau_x, self.tau_xb)
