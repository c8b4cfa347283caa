"""The digpro recipe against specs/digpro.md §5 and §9 C10 (learning rate through the composed
schedule), C11 (loss gating) and C13 (shapes).

The paper presets are composed for real (BigResNet-18, 4096-wide heads) on a tiny synthetic set
of the preset's class count, with the spec's iterations per epoch.
"""

from __future__ import annotations

import pytest
import torch
from deepclust_digpro import DynamicGrouping, group_logits
from deepclust_digpro.plugin import RECIPES
from deepclust_propos import psl
from deepclust_propos.plugin import RECIPES as PROPOS_RECIPES

from corekit import Queue
from corekit import recipe as rc
from corekit.composer import Composed, compose
from corekit.data import ImageSet
from corekit.engine.trainer import StageTrainer
from corekit.plugins import Plugins

CPU = torch.device("cpu")
EPOCHS = 1000

# spec §5: K, S, B, η, ipe, W, λ (paper)
PAPER = {
    "rsod": (4, 32, 256, 0.05, 3, 50, 1.0),
    "ucmerced": (21, 32, 256, 0.05, 8, 200, 0.5),
    "siri_whu": (12, 32, 256, 0.05, 9, 200, 1.0),
    "imagenet10": (10, 96, 128, 0.025, 101, 50, 0.3),
    "imagenet_dogs": (15, 96, 128, 0.025, 152, 50, 0.5),
    "tiny_imagenet": (200, 32, 1024, 0.2, 97, 50, 0.1),
}
# spec §9 C10: lr(1), lr at the end of the warm-up, lr of the last step (total steps)
C10 = {
    "rsod": (3.333333e-4, 0.05, 3.077915e-4, 3_000),
    "ucmerced": (3.125e-5, 0.05, 4.774575e-3, 8_000),
    "siri_whu": (2.777778e-5, 0.05, 4.774575e-3, 9_000),
    "imagenet10": (4.950495e-6, 0.025, 1.538957e-4, 101_000),
    "imagenet_dogs": (3.289474e-6, 0.025, 1.538957e-4, 152_000),
    "tiny_imagenet": (4.123711e-5, 0.2, 1.231166e-3, 97_000),
}


def stage_of(plugins: Plugins, preset: str, *overrides: str) -> rc.Stage:
    return rc.resolve("digpro", plugins.find_recipe, preset, list(overrides)).stages[0]


def synthetic(classes: int, size: int = 32) -> ImageSet:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8, generator=gen)
    return ImageSet("synthetic", images, torch.arange(8) % classes, classes,
                    (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def composed(plugins: Plugins, preset: str) -> Composed:
    k, size, *_, ipe, _, _ = PAPER[preset]
    stage = stage_of(plugins, preset)
    data = synthetic(k, 32)
    return compose(plugins, stage, lambda name: data, CPU, steps_per_epoch=ipe)


def tolerance(lr: float) -> float:
    """The spec prints 6 decimals or 7 significant digits."""
    return 5e-7 if lr > 1e-3 else 1e-6 * lr


def presets() -> list[str]:
    """Every preset of the resolved recipe, the ones inherited from propos included."""
    raw = rc.resolve_raw(str(RECIPES / "digpro.toml"),
                         lambda name: PROPOS_RECIPES / f"{name}.toml")
    return list(raw["presets"])


# -- spec §5 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", sorted(PAPER))
def test_paper_presets_follow_the_spec_table(plugins: Plugins, preset: str) -> None:
    k, size, batch, lr, _, warm_up, lam = PAPER[preset]
    stage = stage_of(plugins, preset)
    assert stage.data.n_clusters == k
    assert stage.augment.size == size and stage.augment.normalize
    assert stage.augment.options["blur"] is False
    assert (stage.train.batch_size, stage.train.optimizer.lr, stage.train.epochs) == (
        batch, lr, EPOCHS)
    schedule = stage.train.schedule
    assert (schedule.type, schedule.options) == ("cosine", {"warmup_epochs": warm_up,
                                                            "cosine_epochs": EPOCHS})
    opt = stage.train.optimizer
    assert (opt.type, opt.options["momentum"], opt.weight_decay, opt.lr_mult) == (
        "sgd", 0.9, 5e-4, {"heads.pred": 10.0})
    heads = stage.model.heads
    assert stage.model.backbone.type == "resnet18_cifar"
    assert (heads["proj"].options["hidden"], heads["proj"].options["out_dim"]) == (4096, 256)
    assert heads["noisy"].options == {"std": 0.001, "start_epoch": warm_up}
    assert (heads["pred"].type, heads["pred"].input) == ("predictor", "noisy")
    assert (heads["pred_clean"].share, heads["pred_clean"].input) == ("pred", "proj")
    assert stage.model.target.parts == ["backbone", "proj"]
    losses = stage.losses
    assert {name: w.type for name, w in losses.items()} == {
        "psa": "digpro_base", "psl": "digpro_prototype_aggregation",
        "group": "digpro_dynamic_grouping"}
    assert (losses["psa"].weight, losses["psa"].start_epoch) == (1.0, 0)
    assert (losses["group"].weight, losses["group"].start_epoch) == (lam, 0)
    assert (losses["psl"].weight, losses["psl"].start_epoch) == (0.1, warm_up)
    assert losses["psl"].options["temperature"] == 0.5
    group = losses["group"].options
    assert (group["beta"], group["temperature"], group["dim"], group["pred"]) == (
        0.99, 0.1, 256, "pred_clean")
    assert "reset_every" not in group  # R = K
    bank = stage.state["bank"]
    assert bank.type == "queue" and bank.options == {
        "size": 2560, "source": "online:proj", "views": [0, 1], "rule": "truncate",
        "normalize": True}
    assert stage.clusterer.type == "spherical_kmeans"
    assert stage.clusterer.features == "target:proj" and stage.clusterer.every == 1
    assert stage.clusterer.options == {"n_init": 10, "max_iter": 300}


@pytest.mark.parametrize("preset", presets())
def test_every_preset_validates_with_one_warm_up_length(plugins: Plugins, preset: str) -> None:
    stage = stage_of(plugins, preset)
    warm_up = stage.train.schedule.options["warmup_epochs"]
    assert stage.losses["psl"].start_epoch == warm_up
    assert stage.model.heads["noisy"].options["start_epoch"] == warm_up
    assert stage.losses["group"].options["dim"] == stage.model.heads["proj"].options["out_dim"]


def test_cpu_presets_compose(plugins: Plugins, digits: ImageSet) -> None:
    for preset in ("digits", "mnist"):
        stage = stage_of(plugins, preset)
        c = compose(plugins, stage, lambda name: digits, CPU, steps_per_epoch=14)
        loss = next(w.fn for w in c.losses if w.name == "group")
        assert isinstance(loss, DynamicGrouping) and loss.groups.shape == (10, 64)


# -- C10 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", sorted(C10))
def test_c10_lr_schedule_of_each_paper_preset(plugins: Plugins, preset: str,
                                              tmp_path) -> None:
    first, peak, last, total = C10[preset]
    _, _, _, eta, ipe, warm_up, _ = PAPER[preset]
    assert ipe * EPOCHS == total
    c = composed(plugins, preset)
    for step, lr in ((1, first), (warm_up * ipe, peak), (total, last)):
        assert eta * c.schedule.factor(step) == pytest.approx(lr, abs=tolerance(lr))
    # as the engine sets it: the predictor's group at ×10 (the shared pred_clean adds none)
    trainer = StageTrainer(c, tmp_path, CPU, None, 0, lambda _: None, progress=False)
    pred = {id(p) for p in c.model.online.part("pred").parameters()}
    trainer.global_step = total
    trainer.set_lr()
    for group in c.optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        factor = 10 if ids == pred else 1
        assert ids == pred or not ids & pred
        assert group["lr"] == pytest.approx(factor * last, abs=factor * tolerance(last))


# -- C11 -------------------------------------------------------------------------------------
def test_c11_loss_gating(plugins: Plugins) -> None:
    """L = L_base + λ·L_group + γ·1[e > W]·L_proto with λ = 0.3 (ImageNet-10), γ = 0.1:
    −1.0 during the warm-up, −0.95 after (spec C11). Epochs are 0-based here: the paper's
    e ≤ W are 0..W−1."""
    c = composed(plugins, "imagenet10")
    values = {"psa": -1.6, "group": 2.0, "psl": 0.5}
    warm_up = PAPER["imagenet10"][5]

    def total(epoch: int) -> float:
        return sum(w.weight * values[w.name] for w in c.losses if w.active(epoch))

    assert total(0) == pytest.approx(-1.0) and total(warm_up - 1) == pytest.approx(-1.0)
    assert total(warm_up) == pytest.approx(-0.95) and total(999) == pytest.approx(-0.95)
    assert all(w.active(0) for w in c.losses if w.name != "psl")  # L_group is never gated


# -- C13 -------------------------------------------------------------------------------------
def test_c13_shapes(plugins: Plugins) -> None:
    c = composed(plugins, "imagenet10")
    net = c.model.online
    backbone = net.part("backbone").eval()
    with torch.no_grad():
        for size in (32, 96):
            assert backbone(torch.rand(2, 3, size, size)).shape == (2, 512)
    count = lambda part: sum(p.numel() for p in net.part(part).parameters())  # noqa: E731
    assert count("backbone") == 11_168_832
    assert count("proj") == 3_158_272 and count("pred") == 2_109_696
    assert net.part("pred_clean") is net.part("pred")
    loss = next(w.fn for w in c.losses if w.name == "group")
    assert loss.groups.shape == (10, 256)
    bank = c.state["bank"]
    assert isinstance(bank, Queue) and bank.read().shape == (2560, 256)
    q = torch.randn(128, 256)
    assert group_logits(q, loss.groups).shape == (128, 10)
    labels = torch.arange(128) % 10
    assert torch.isfinite(psl(q, torch.nn.functional.normalize(q, dim=1), labels, 10))
