"""HaDis's training step against the authors' own, at 32 px, interleaved on one pinned core.

The reference is the step of the official HaDis code (HaDis, arXiv 2401.14038: ProPos's
BYOL-style step plus hardness-aware self-distillation), written out here from the paper's
equations and the code's settings in plain PyTorch: a torchvision ResNet-18 with the CIFAR stem
(3x3 stride-1 conv, no max-pool, no ``fc``), a projector and a predictor
``Linear-BatchNorm1d-ReLU-Linear`` (512/256 -> 4096 -> 256, predictor weights N(0, 0.01²)), an
EMA teacher (backbone + projector, m = 0.996, updated after both forward directions and before
the backward), four backbone passes per step (student and no-grad teacher, both directions), DSA
(-2 cos(p, k)), HSD (hardest positive / negative by teacher-teacher against teacher-prediction
distances, detached gap weights, two-logit softmax, τ_h = 0.5) and PCL (batch prototypes from
hard pseudo-labels, other student prototypes as negatives, absent clusters at -10, τ_p = 0.5)
averaged over the two directions; SGD momentum 0.9, weight decay 5e-4 on everything, predictor
at 10x the LR; fp32, eager. The timed step is in the first warm-up epoch, as ours: latent noise
σ = 0 and PCL computed but weighted 0 (the official code computes it and multiplies by 0; ours
skips it, a K x 256 prototype contrast: negligible). Pseudo-labels for the authors' PCL are
drawn at random (K = 10).

Ours is ``StageTrainer.train_batch`` of the ``hadis`` recipe's ``cifar10`` preset (the same
network, heads, teacher, losses and optimizer; same FLOPs per image) in each setting asked for:
``fp32`` (pinned), ``auto`` (the numerics probe decides, as ``deepclust train hadis`` does
without any option; its choice and seconds are recorded) and fixed ones such as
``bf16+channels_last``. Both sides get their views from the recipe's view pipelines on the
same uint8 batches (the authors' loader transforms run in worker processes, outside their step;
here the views are made in the step, on both sides alike, as in ``bench/cc_step.py``).

After ``--warmup`` untimed steps each, ``--rounds`` rounds time one step of every contestant,
in an order rotated from round to round (``bench.step_race.interleave``). Reported per setting:
median seconds per step, the authors' median over ours, that ratio's spread over the rounds,
the first batch's loss against ours in fp32, each contestant's first batch on the same views
(the global random state, which the kornia views draw from, reseeded; allowed within
``corekit.engine.numerics.LOSS_RTOL``), and our step by phase.

    taskset -c 1 python bench/hadis_step.py --batch 128 --rounds 5

writes ``bench/results/hadis_step.json`` and a markdown table.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torchvision.models import resnet18  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, step_race  # noqa: E402
from bench.step_race import StageStep  # noqa: E402
from corekit import recipe as rc  # noqa: E402
from corekit.engine import numerics as nm  # noqa: E402
from corekit.plugins import get_plugins  # noqa: E402
from corekit.runner import StageProbe  # noqa: E402

CPU = torch.device("cpu")
CLUSTERS = 10


# -- the authors' step ------------------------------------------------------------------------
def big_resnet18() -> nn.Module:
    """ResNet-18 with the CIFAR stem: 3x3 stride-1 first conv, no max-pool, no fc."""
    net = resnet18()
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


def mlp(dim_in: int, hidden: int = 4096, dim_out: int = 256) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, dim_out))


def distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances of the rows of x to those of y by ‖x‖² + ‖y‖² − 2xᵀy, ≥ 1e-12."""
    squared = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return squared.clamp(min=1e-12).sqrt()


def dsa(p: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Diffused sampling alignment (ProPos PSA): mean of −2·cos(p_i, k_i)."""
    return -2 * F.cosine_similarity(p, k, dim=1, eps=1e-8).mean()


def hsd(k: torch.Tensor, p: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Hardness-aware self-distillation of teacher ``k`` (unit, no grad) and predictions ``p``."""
    teacher = distances(k, k)
    cross = distances(k, F.normalize(p, dim=1))
    positive = teacher <= cross.diagonal()[:, None]
    nu_pos, j_pos = cross.masked_fill(~positive, -torch.inf).max(1)
    nu_neg, j_neg = cross.masked_fill(positive, torch.inf).min(1)
    has_neg = (~positive).any(1)
    nu_neg = torch.where(has_neg, nu_neg, torch.zeros_like(nu_neg))
    w_pos = (nu_pos.detach() - teacher.gather(1, j_pos[:, None]).squeeze(1)).clamp(min=0)
    w_neg = (teacher.gather(1, j_neg[:, None]).squeeze(1) - nu_neg.detach()).clamp(min=0)
    w_neg = torch.where(has_neg, w_neg, torch.zeros_like(w_neg))
    logits = torch.stack((w_neg * nu_neg, w_pos * nu_pos), dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(len(k), dtype=torch.long))


def pcl(q: torch.Tensor, k: torch.Tensor, labels: torch.Tensor, clusters: int,
        tau: float = 0.5) -> torch.Tensor:
    """Prototype contrast (ProPos PSL) of clean student ``q`` and teacher ``k`` (both unit)
    with hard ``labels``: student prototype c against teacher prototype c, other student
    prototypes the negatives, absent clusters' columns at −10."""
    onehot = F.one_hot(labels, clusters).to(q.dtype)
    present = onehot.sum(0) > 0
    student = F.normalize(onehot.T @ q, dim=1)
    teacher = F.normalize(onehot.T @ k, dim=1)
    logits = student @ student.T / tau
    positives = (student * teacher).sum(1) / tau
    eye = torch.eye(clusters, dtype=torch.bool)
    logits = torch.where(eye, positives[:, None], logits)
    logits = logits.masked_fill(~present[None, :], -10.0)
    return (logits.logsumexp(1) - positives)[present].mean()


class AuthorsStep:
    """The official training step on views from ``views``."""

    def __init__(self, views: list[Callable[[torch.Tensor], torch.Tensor]], batch: int) -> None:
        torch.manual_seed(0)
        self.views = views
        self.backbone, self.projector = big_resnet18().train(), mlp(512).train()
        self.predictor = mlp(256).train()
        for layer in self.predictor:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
        self.t_backbone, self.t_projector = (copy.deepcopy(self.backbone),
                                             copy.deepcopy(self.projector))
        self.student = [*self.backbone.parameters(), *self.projector.parameters()]
        self.teacher = [*self.t_backbone.parameters(), *self.t_projector.parameters()]
        for param in self.teacher:
            param.requires_grad_(False)
        lr = 0.05 * batch / 256
        self.optimizer = torch.optim.SGD(
            [{"params": self.student, "lr": lr},
             {"params": self.predictor.parameters(), "lr": 10 * lr}],
            lr=lr, momentum=0.9, weight_decay=5e-4)
        self.sigma, self.pcl_weight, self.momentum = 0.0, 0.0, 0.996  # warm-up epoch
        self.generator = torch.Generator().manual_seed(0)

    def direction(self, student_view: torch.Tensor, teacher_view: torch.Tensor,
                  labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q = self.projector(self.backbone(student_view))
        with torch.no_grad():
            k = F.normalize(self.t_projector(self.t_backbone(teacher_view)), dim=1)
        p = self.predictor(q + self.sigma * torch.randn_like(q))
        return dsa(p, k), hsd(k, p), pcl(F.normalize(q, dim=1), k, labels, CLUSTERS)

    def __call__(self, images: torch.Tensor) -> float:
        """One step on ``images``, float in [0, 1] (what the loader's ToTensor gives)."""
        a, b = (view(images) for view in self.views)
        labels = torch.randint(0, CLUSTERS, (len(images),), generator=self.generator)
        ab, ba = self.direction(a, b, labels), self.direction(b, a, labels)
        with torch.no_grad():
            for t, s in zip(self.teacher, self.student, strict=True):
                t.mul_(self.momentum).add_(s, alpha=1 - self.momentum)
        psa, hsd_loss, psl = ((x + y) / 2 for x, y in zip(ab, ba, strict=True))
        loss = psa + hsd_loss + self.pcl_weight * psl
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


# -- ours ---------------------------------------------------------------------------------------
def hadis_stage(batch: int, precision: str, memory_format: str) -> rc.Stage:
    overrides = ['train.device="cpu"', "augment.size=32", f"train.batch_size={batch}",
                 "train.checkpoint_every=0", "train.time_phases=true",
                 f'train.precision="{precision}"', f'train.memory_format="{memory_format}"',
                 "train.compile=false"]
    return rc.resolve("hadis", get_plugins().find_recipe, "cifar10", overrides).stages[0]


def auto_numerics(data: Any, batch: int) -> dict[str, Any]:
    """What ``train.precision = memory_format = "auto"`` (the default) chooses for the stage:
    a fresh probe with an empty decision cache."""
    stage = hadis_stage(batch, "auto", "auto")
    probe = StageProbe(get_plugins(), stage, lambda _name: data, CPU)
    with tempfile.TemporaryDirectory() as cache:
        os.environ[nm.CACHE_ENV] = cache
        t0 = time.perf_counter()
        decision = probe.numerics()
        wall = time.perf_counter() - t0
    print(f"auto chose {decision.chosen.label()} in {wall:.1f} s", flush=True)
    return {"chosen": decision.chosen, "label": decision.chosen.label(),
            "probe_seconds": decision.probe_seconds, "wall_seconds": wall,
            "note": decision.note, "decision": decision.to_json()}


def our_step(data: Any, batch: int, numerics: nm.Numerics) -> StageStep:
    stage = hadis_stage(batch, numerics.precision, numerics.memory_format)
    return StageStep(data, stage, numerics.compile)


# -- the run ------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    data = common.noise_set(args.images, 3, 32)
    auto = auto_numerics(data, args.batch) if "auto" in args.settings else None
    ours: dict[str, StageStep] = {}
    for text in args.settings:
        if text == "auto":
            ours[f"auto (chose {auto['label']})"] = our_step(data, args.batch, auto["chosen"])
        else:
            numerics = nm.Numerics.from_label(text)
            ours[numerics.label()] = our_step(data, args.batch, numerics)
    views = next(iter(ours.values())).views
    authors = AuthorsStep(views, args.batch)
    result = step_race.race(data, args.batch, authors, ours, args.warmup, args.rounds, seed=0)
    if auto is not None:
        result["auto"] = {k: v for k, v in auto.items() if k != "chosen"}
    return result


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    auto = result.get("auto")
    probe = (f"; auto's probe chose {auto['label']} in {auto['wall_seconds']:.1f} s"
             if auto else "")
    return (f"HaDis (cifar10 preset) at 32 px, batch {args.batch}, {args.rounds} interleaved "
            f"rounds{probe}\n\n" + step_race.speed_tables(result))


def main() -> None:
    args = step_race.race_parser(__doc__, ["fp32", "auto", "bf16+channels_last"],
                                 "ours, the first the loss reference: auto or "
                                 "PRECISION[+channels_last]", 1024, 5).parse_args()
    step_race.run_bench("hadis_step", args, run, report, batch=args.batch, rounds=args.rounds,
                        settings=args.settings)


if __name__ == "__main__":
    main()
