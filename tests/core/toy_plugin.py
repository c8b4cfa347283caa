"""A toy plugin proving the core's shapes for later papers: a stateful loss that updates its
state inside the forward with gradient (DigPro's momentum groups), a loss that reads a second
encoder (cIDFD), and a loss that reads the reference set (cIDFD's background images)."""

from __future__ import annotations

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from corekit import Need, Step, hookimpl


class MomentumCentre(nn.Module):
    """Keeps a centre ``g``; inside the forward, ``g' = β g + (1 − β) mean(z)`` keeps the graph
    (gradient flows through the update), the loss reads ``g'`` and the buffer stores it."""

    def __init__(self, head: str = "proj", beta: float = 0.9, dim: int = 16) -> None:
        super().__init__()
        self.head, self.beta = head, beta
        self.register_buffer("centre", torch.zeros(dim))
        self.updates = 0

    def needs(self) -> list[Need]:
        return [Need.output(self.head)]

    def forward(self, step: Step) -> torch.Tensor:
        z = F.normalize(step.output(self.head, 0), dim=1)
        updated = self.beta * self.centre + (1 - self.beta) * z.mean(0)
        self.centre = updated.detach()
        self.updates += 1
        return -(z @ updated).mean()


@attrs.define
class EncoderAgreement:
    """Cosine disagreement between a second encoder's features and the main projection."""

    encoder: str = "other"
    head: str = "proj"

    def needs(self) -> list[Need]:
        return [Need.output(self.encoder), Need.output(self.head)]

    def __call__(self, step: Step) -> torch.Tensor:
        a, b = step.output(self.encoder, 0), step.output(self.head, 0)
        n = min(a.shape[1], b.shape[1])
        return 1 - F.cosine_similarity(a[:, :n], b[:, :n]).mean()


@attrs.define
class ReferenceMean:
    """Reads the reference batch: the squared mean intensity difference to the main batch."""

    def needs(self) -> list[Need]:
        return [Need.reference(), Need.output("proj")]

    def __call__(self, step: Step) -> torch.Tensor:
        assert step.reference is not None
        gap = (step.views[0].mean() - step.reference.mean()) ** 2
        return gap + 0 * step.output("proj", 0).sum()


@attrs.define
class TargetAgreement:
    """Reads the target branch's ``head`` and the E-step's labels (a PSL-shaped reader)."""

    head: str = "proj"
    labels: bool = False

    def needs(self) -> list[Need]:
        extra = [Need.labels()] if self.labels else []
        return [Need.output(self.head), Need.output(self.head, "target"), *extra]

    def __call__(self, step: Step) -> torch.Tensor:
        online, target = step.output(self.head, 0), step.output(self.head, 0, "target")
        return 1 - F.cosine_similarity(online, target).mean()


@attrs.define
class AlwaysNaN:
    """A loss that goes bad: NaN from epoch ``at_epoch`` on."""

    at_epoch: int = 0

    def needs(self) -> list[Need]:
        return [Need.output("proj")]

    def __call__(self, step: Step) -> torch.Tensor:
        value = step.output("proj", 0).pow(2).mean()
        return value * float("nan") if step.epoch >= self.at_epoch else value


@hookimpl
def register_losses(register):
    register("momentum_centre", MomentumCentre)
    register("encoder_agreement", EncoderAgreement)
    register("reference_mean", ReferenceMean)
    register("always_nan", AlwaysNaN, aliases=("nan_loss",))
    register("hook_recorder", HookRecorder)
    register("target_agreement", TargetAgreement)
    register("bank_pull", BankPull)
    register("probs_reader", ProbsReader)


class OnlineCentroids:
    """A per-batch clusterer: ``fit`` seeds centroids from the first K points; ``update``
    assigns a batch to its nearest centroid and moves each centroid by momentum."""

    def __init__(self, n_clusters: int, momentum: float = 0.9) -> None:
        self.n_clusters, self.momentum = n_clusters, momentum
        self.centroids: torch.Tensor | None = None
        self.updates = 0

    def fit(self, features: torch.Tensor):
        from corekit.components.clusterers import ClusterResult

        self.centroids = features[: self.n_clusters].clone()
        labels = torch.cdist(features, self.centroids).argmin(dim=1)
        return ClusterResult(labels, self.centroids, 0.0)

    def update(self, features: torch.Tensor) -> torch.Tensor:
        labels = torch.cdist(features, self.centroids).argmin(dim=1)
        for k in labels.unique():
            mean = features[labels == k].mean(0)
            self.centroids[k] = self.momentum * self.centroids[k] + (1 - self.momentum) * mean
        self.updates += 1
        return labels


@hookimpl
def register_clusterers(register):
    register("online_centroids", OnlineCentroids)


class HookRecorder(nn.Module):
    """A loss that records every lifecycle call it receives, in order, as (hook, epoch, step);
    on each epoch end it extracts whole-set features of ``features`` through the context."""

    calls: list[tuple[str, int, int]]

    def __init__(self, features: str = "online:proj") -> None:
        super().__init__()
        self.features = features
        self.calls = []
        self.extracted: list[tuple[int, ...]] = []

    def needs(self) -> list[Need]:
        return [Need.output("proj")]

    def forward(self, step: Step) -> torch.Tensor:
        self.calls.append(("loss", step.epoch, step.global_step))
        return step.output("proj", 0).pow(2).mean()

    def on_stage_start(self, ctx) -> None:
        self.calls.append(("on_stage_start", ctx.epoch, ctx.global_step))

    def on_epoch_start(self, ctx) -> None:
        self.calls.append(("on_epoch_start", ctx.epoch, ctx.global_step))

    def on_step_start(self, step: Step) -> None:
        self.calls.append(("on_step_start", step.epoch, step.global_step))

    def before_backward(self, step: Step) -> None:
        self.calls.append(("before_backward", step.epoch, step.global_step))

    def after_optimizer_step(self, step: Step) -> None:
        self.calls.append(("after_optimizer_step", step.epoch, step.global_step))

    def on_epoch_end(self, ctx) -> None:
        self.calls.append(("on_epoch_end", ctx.epoch, ctx.global_step))
        self.extracted.append(tuple(ctx.features(self.features).shape))

    def on_stage_end(self, ctx) -> None:
        self.calls.append(("on_stage_end", ctx.epoch, ctx.global_step))
        (ctx.out_dir / "hook_calls.txt").write_text(f"{len(self.calls)}\n")


@attrs.define
class BankPull:
    """Reads two named memory banks: ``−mean cos`` of the batch to its rows in each."""

    banks: list[str] = attrs.field(factory=lambda: ["bank_a", "bank_b"])
    head: str = "proj"

    def needs(self) -> list[Need]:
        return [Need.output(self.head)] + [Need.state(b, "memory_bank") for b in self.banks]

    def __call__(self, step: Step) -> torch.Tensor:
        z = F.normalize(step.output(self.head, 0), dim=1)
        rows = [step.state(b).read()[step.indices] for b in self.banks]
        return -sum((z * r).sum(1).mean() for r in rows)


@attrs.define
class ProbsReader:
    """Reads a head as probabilities (the batch marginal's entropy gap)."""

    head: str = "cluster"

    def needs(self) -> list[Need]:
        return [Need.output(self.head, reads="probs"), Need("toy_flag", "on")]

    def __call__(self, step: Step) -> torch.Tensor:
        p = step.output(self.head, 0)
        marginal = p.mean(0)
        return (marginal * marginal.clamp_min(1e-12).log()).sum()


def toy_flag(need: Need, ctx) -> str | None:
    """A need kind a plugin adds: met when the stage's data.subset is set."""
    return None if ctx.stage.data.subset else "needs the toy flag: set data.subset"


@hookimpl
def register_need_kinds(register):
    register("toy_flag", toy_flag)
