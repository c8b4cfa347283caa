"""specs/hadis.md §9 C10 (learning rate) and C11 (EMA momentum) on the objects the hadis recipe
composes: its schedule, its optimizer's parameter groups, and its ``target`` EMA state.

The paper presets are composed for real (BigResNet-18, 4096-wide heads) on a tiny synthetic
CIFAR-shaped set, with the spec's 234 iterations per epoch.
"""

from __future__ import annotations

import pytest
import torch

from corekit import recipe as rc
from corekit.composer import Composed, compose
from corekit.data import ImageSet
from corekit.engine.trainer import StageTrainer
from corekit.network import Network, Networks
from corekit.plugins import Plugins
from corekit.state import EMA
from corekit.step import Step

STEPS, EPOCHS, ETA = 234, 1000, 0.05
CPU = torch.device("cpu")

# C10, by hand in the spec: lr(n) at 1-based step n, B = 256, 234 it/epoch, η = 0.05
C10 = [(1, 4.273504e-6), (5850, 0.025), (11699, 0.049996), (11700, 0.05), (122850, 0.026961),
       (234000, 3.077915e-4)]


def tolerance(lr: float) -> float:
    """The spec prints 6 decimals or 7 significant digits."""
    return 5e-7 if lr > 1e-3 else 1e-6 * lr


def cifar_like(classes: int) -> ImageSet:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return ImageSet("synthetic", images, torch.arange(16) % classes, classes, (0.5,) * 3,
                    (0.25,) * 3)


def composed(plugins: Plugins, preset: str, classes: int = 10) -> Composed:
    stage = rc.resolve("hadis", plugins.find_recipe, preset).stages[0]
    data = cifar_like(classes)
    return compose(plugins, stage, lambda name: data, CPU, steps_per_epoch=STEPS)


@pytest.fixture
def cifar10(plugins: Plugins) -> Composed:
    return composed(plugins, "cifar10")


def test_recipe_resolves_to_the_c10_settings(plugins: Plugins) -> None:
    stage = rc.resolve("hadis", plugins.find_recipe, "cifar10").stages[0]
    schedule = stage.train.schedule
    assert (schedule.type, schedule.options) == ("cosine", {"warmup_epochs": 50,
                                                            "cosine_epochs": 1000})
    assert (stage.train.optimizer.lr, stage.train.epochs) == (ETA, EPOCHS)


@pytest.mark.parametrize(("step", "lr"), C10)
def test_c10_composed_schedule(cifar10: Composed, step: int, lr: float) -> None:
    assert ETA * cifar10.schedule.factor(step) == pytest.approx(lr, abs=tolerance(lr))


def predictor_group(c: Composed) -> dict:
    """The one optimizer group holding the predictor's parameters, found by identity."""
    pred = {id(p) for p in c.model.online.part("pred").parameters()}
    assert pred
    holding = [g for g in c.optimizer.param_groups if pred & {id(p) for p in g["params"]}]
    assert len(holding) == 1, "the predictor's parameters are split over several groups"
    (group,) = holding
    assert {id(p) for p in group["params"]} == pred, "the predictor group holds other parts"
    return group


def test_predictor_group_has_ten_times_the_lr(cifar10: Composed) -> None:
    group = predictor_group(cifar10)
    others = [g for g in cifar10.optimizer.param_groups if g is not group]
    assert others
    assert group["lr"] == pytest.approx(10 * ETA)
    assert all(g["lr"] == pytest.approx(ETA) for g in others)
    grouped = {id(p) for g in cifar10.optimizer.param_groups for p in g["params"]}
    assert grouped == {id(p) for p in cifar10.model.online.parameters()}
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 5e-4
               for g in cifar10.optimizer.param_groups)


@pytest.mark.parametrize(("step", "lr"), C10)
def test_c10_learning_rate_of_each_group_as_the_engine_sets_it(
        cifar10: Composed, tmp_path, step: int, lr: float) -> None:
    trainer = StageTrainer(cifar10, tmp_path, CPU, None, 0, lambda _: None, progress=False)
    trainer.global_step = step
    trainer.set_lr()
    group = predictor_group(cifar10)
    assert group["lr"] == pytest.approx(10 * lr, abs=10 * tolerance(lr))
    for other in cifar10.optimizer.param_groups:
        if other is not group:
            assert other["lr"] == pytest.approx(lr, abs=tolerance(lr))


def scalar_network(value: float) -> Network:
    layer = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(layer.weight, value)
    return Network({"backbone": layer}, {}, {})


def test_c11_constant_momentum_of_the_composed_target(cifar10: Composed) -> None:
    target = cifar10.state["target"]
    assert isinstance(target, EMA) and cifar10.model.target is target
    assert target.parts == ["backbone", "proj"]
    for step in (1, 117000, STEPS * EPOCHS):
        assert target.momentum(step) == 0.996
    # C11: teacher scalar 1, student fixed at 0, ten scheduled updates with that momentum
    teacher = EMA(scalar_network(1.0), ["backbone"], target.momentum(1), target.schedule,
                  total_steps=target.total_steps)
    student = scalar_network(0.0)
    for n in range(1, 11):
        teacher.after_optimizer_step(Step(Networks(student), [], torch.arange(1), 0, n, EPOCHS))
    weight = teacher.network.get_parameter("encoders.backbone.weight")
    assert weight.item() == pytest.approx(0.960712, abs=1e-6)


def test_c11_cosine_momentum_of_the_composed_cifar20_target(plugins: Plugins) -> None:
    target = composed(plugins, "cifar20", classes=20).state["target"]
    assert target.total_steps == STEPS * EPOCHS == 234000
    assert target.momentum(1) == pytest.approx(0.996000, abs=1e-6)
    assert target.momentum(1) > 0.996  # already raised by one step of 234000
    assert target.momentum(117000) == pytest.approx(0.998, abs=1e-9)
    assert target.momentum(234000) == pytest.approx(1.0, abs=1e-12)
