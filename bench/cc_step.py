"""CC's training step against the authors' own, at 32 px, interleaved on one pinned core.

The reference is the step of the official CC code (Yunfan-Li/Contrastive-Clustering,
``train.py``, ``modules/network.py``, ``modules/contrastive_loss.py``), written out here: a
torchvision ResNet-34 without its ``fc``, ``instance_projector`` (Linear-ReLU-Linear) and
``cluster_projector`` (Linear-ReLU-Linear-Softmax) as ``nn.Sequential``, both views through the
backbone one after the other, ``InstanceLoss`` and ``ClusterLoss`` with their boolean masks and
``CrossEntropyLoss(reduction="sum") / N``, Adam, fp32 and eager. Ours is
``StageTrainer.train_batch`` of the ``cc`` recipe's ``cifar10`` preset at ``augment.size = 32``
(the same network, losses and optimizer; same FLOPs per image), in each setting asked for:
precision, memory format, and ``torch.compile`` of every encoder and head with a mode and
``dynamic``. Both sides get their views from the recipe's view pipelines on the same uint8
batches (the authors' loader transforms run in worker processes, outside their step; here the
views are made in the step, on both sides alike).

After ``--warmup`` untimed steps each (compilation happens there; its seconds are recorded),
``--rounds`` rounds time one step of every contestant, in an order rotated from round to round.
Reported per setting: median seconds per step, the authors' median over ours (the speed-up),
that ratio's spread over the rounds (each round's authors' step over its step), the first
batch's loss against ours in fp32 (a setting whose loss differs by more than
``corekit.engine.numerics.LOSS_RTOL`` is marked not allowed), and our step by phase (the
engine's ``train.time_phases`` timer: augment, forward, backward, optimizer, ...).

    taskset -c 1 python bench/cc_step.py --batch 128 --rounds 7
    taskset -c 1 python bench/cc_step.py --compile default:none max-autotune-no-cudagraphs:false

writes ``bench/results/cc_step.json`` and a markdown table.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import attrs  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torchvision.models import resnet34  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import noise_set  # noqa: E402
from bench.step_race import StageStep, race, race_parser, run_bench, speed_tables  # noqa: E402
from corekit import recipe as rc  # noqa: E402
from corekit.engine.numerics import Numerics  # noqa: E402
from corekit.plugins import get_plugins  # noqa: E402

CPU = torch.device("cpu")


# -- the authors' step ------------------------------------------------------------------------
def _pair_mask(half: int) -> torch.Tensor:
    """(2h, 2h) bool, the official code's ``mask_correlated_samples``: every pair but each row
    with itself and with its positive (i and h + i)."""
    n = 2 * half
    mask = torch.ones((n, n)).fill_diagonal_(0)
    for i in range(half):
        mask[i, half + i] = mask[half + i, i] = 0
    return mask.bool()


def _contrast(sim: torch.Tensor, half: int, mask: torch.Tensor) -> torch.Tensor:
    """The official losses' shared tail: positives (the ±h diagonals) against the masked
    negatives, summed cross-entropy over the 2h rows, divided by 2h."""
    n = 2 * half
    positives = torch.cat((torch.diag(sim, half), torch.diag(sim, -half))).reshape(n, 1)
    logits = torch.cat((positives, sim[mask].reshape(n, -1)), dim=1)
    return nn.functional.cross_entropy(logits, torch.zeros(n, dtype=torch.long),
                                       reduction="sum") / n


class InstanceLoss(nn.Module):
    """``modules/contrastive_loss.py: InstanceLoss`` of the official code."""

    def __init__(self, batch_size: int, temperature: float) -> None:
        super().__init__()
        self.batch_size, self.temperature = batch_size, temperature
        self.mask = _pair_mask(batch_size)

    def forward(self, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
        z = torch.cat((z_i, z_j), dim=0)
        return _contrast(torch.matmul(z, z.T) / self.temperature, self.batch_size, self.mask)


class ClusterLoss(nn.Module):
    """``modules/contrastive_loss.py: ClusterLoss`` of the official code."""

    def __init__(self, class_num: int, temperature: float) -> None:
        super().__init__()
        self.class_num, self.temperature = class_num, temperature
        self.mask = _pair_mask(class_num)
        self.similarity = nn.CosineSimilarity(dim=2)

    def forward(self, c_i: torch.Tensor, c_j: torch.Tensor) -> torch.Tensor:
        p_i = c_i.sum(0).view(-1)
        p_i = p_i / p_i.sum()
        ne_i = math.log(p_i.size(0)) + (p_i * torch.log(p_i)).sum()
        p_j = c_j.sum(0).view(-1)
        p_j = p_j / p_j.sum()
        ne_j = math.log(p_j.size(0)) + (p_j * torch.log(p_j)).sum()
        c = torch.cat((c_i.t(), c_j.t()), dim=0)
        sim = self.similarity(c.unsqueeze(1), c.unsqueeze(0)) / self.temperature
        return _contrast(sim, self.class_num, self.mask) + ne_i + ne_j


class AuthorsNetwork(nn.Module):
    """``modules/network.py: Network`` over ``modules/resnet.py``'s torchvision ResNet-34."""

    def __init__(self, feature_dim: int, class_num: int) -> None:
        super().__init__()
        self.resnet = resnet34()
        self.resnet.fc = nn.Identity()
        rep = 512
        self.instance_projector = nn.Sequential(nn.Linear(rep, rep), nn.ReLU(),
                                                nn.Linear(rep, feature_dim))
        self.cluster_projector = nn.Sequential(nn.Linear(rep, rep), nn.ReLU(),
                                               nn.Linear(rep, class_num), nn.Softmax(dim=1))

    def forward(self, x_i: torch.Tensor, x_j: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h_i, h_j = self.resnet(x_i), self.resnet(x_j)
        z_i = F.normalize(self.instance_projector(h_i), dim=1)
        z_j = F.normalize(self.instance_projector(h_j), dim=1)
        return z_i, z_j, self.cluster_projector(h_i), self.cluster_projector(h_j)


@attrs.define
class AuthorsStep:
    """The official training step (``train.py: train``) on views from ``views``."""

    views: list[Callable[[torch.Tensor], torch.Tensor]]
    batch_size: int
    class_num: int
    model: AuthorsNetwork = attrs.field(init=False)
    optimizer: torch.optim.Optimizer = attrs.field(init=False)
    instance: InstanceLoss = attrs.field(init=False)
    cluster: ClusterLoss = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        torch.manual_seed(0)
        self.model = AuthorsNetwork(128, self.class_num).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=3e-4, weight_decay=0.0)
        self.instance = InstanceLoss(self.batch_size, 0.5)
        self.cluster = ClusterLoss(self.class_num, 1.0)

    def __call__(self, images: torch.Tensor) -> float:
        """One step on ``images``, float in [0, 1] (what the loader's ToTensor gives)."""
        x_i, x_j = (view(images) for view in self.views)
        self.optimizer.zero_grad()
        z_i, z_j, c_i, c_j = self.model(x_i, x_j)
        loss = self.instance(z_i, z_j) + self.cluster(c_i, c_j)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


# -- ours ---------------------------------------------------------------------------------------
@attrs.frozen
class Setting:
    """Our numerics, and ``torch.compile``'s mode and ``dynamic`` where compiled."""

    numerics: Numerics
    mode: str | None = None
    dynamic: bool | None = None

    def label(self) -> str:
        if not self.numerics.compile:
            return self.numerics.label()
        return f"{self.numerics.label()}({self.mode}, dynamic={self.dynamic})"


def cc_stage(batch: int, setting: Setting) -> rc.Stage:
    overrides = ['train.device="cpu"', "augment.size=32", f"train.batch_size={batch}",
                 "train.checkpoint_every=0", "train.time_phases=true",
                 f'train.precision="{setting.numerics.precision}"',
                 f'train.memory_format="{setting.numerics.memory_format}"',
                 "train.compile=false"]
    return rc.resolve("cc", get_plugins().find_recipe, "cifar10", overrides).stages[0]


def our_step(data: Any, batch: int, setting: Setting) -> StageStep:
    """``StageTrainer.train_batch`` of CC in ``setting``, on batches of the given indices."""
    return StageStep(data, cc_stage(batch, setting), setting.numerics.compile, setting.mode,
                     setting.dynamic)


# -- the run ------------------------------------------------------------------------------------
def parse_setting(text: str) -> Setting:
    """``bf16+channels_last`` or, compiled, ``bf16+channels_last+compile@MODE:DYNAMIC``."""
    label, _, options = text.partition("@")
    numerics = Numerics.from_label(label)
    if not numerics.compile:
        return Setting(numerics)
    mode, _, dynamic = (options or "default:none").partition(":")
    return Setting(numerics, mode, {"none": None, "true": True, "false": False}[dynamic])


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = noise_set(args.images, 3, 32)
    settings = [parse_setting(s) for s in args.settings]
    ours = {s.label(): our_step(data, args.batch, s) for s in settings}
    views = next(iter(ours.values())).views
    authors = AuthorsStep(views, args.batch, 10)
    return race(data, args.batch, authors, ours, args.warmup, args.rounds, seed=0)


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    return (f"CC at 32 px, batch {args.batch}, {args.rounds} interleaved rounds\n\n"
            + speed_tables(result))


def main() -> None:
    args = race_parser(__doc__, ["fp32", "fp32+channels_last", "bf16", "bf16+channels_last"],
                       "ours, the first the loss reference; compiled: "
                       "LABEL+compile@MODE:none|true|false", 2048, 7).parse_args()
    run_bench("cc_step", args, run, report, batch=args.batch, rounds=args.rounds,
              settings=args.settings)

if __name__ == "__main__":
    main()
