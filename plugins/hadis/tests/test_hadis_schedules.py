"""specs/hadis.md §9 C10 (learning rate) and C11 (EMA momentum) through the core's machinery,
with the settings the hadis recipe resolves to."""

from __future__ import annotations

import pytest
import torch

from corekit import recipe as rc
from corekit.cli import recipe_finder
from corekit.engine.schedule import lr_factor
from corekit.network import Network
from corekit.plugins import Plugins
from corekit.recipe import Schedule
from corekit.state import EMATarget

C10 = Schedule(type="cosine", warmup_epochs=50, cosine_epochs=1000)
STEPS, EPOCHS, ETA = 234, 1000, 0.05


def test_recipe_resolves_to_the_c10_schedule(plugins: Plugins) -> None:
    stage = rc.resolve("hadis", recipe_finder(plugins), "cifar10").stages[0]
    assert stage.train.schedule == C10
    assert (stage.train.optimizer.lr, stage.train.epochs) == (ETA, EPOCHS)


@pytest.mark.parametrize(("step", "lr"), [
    (1, 4.273504e-6), (5850, 0.025), (11699, 0.049996), (11700, 0.05), (122850, 0.026961),
    (234000, 3.077915e-4),
])
def test_c10_learning_rate(step: int, lr: float) -> None:
    factor = lr_factor(C10, step, STEPS, EPOCHS)
    tol = 5e-7 if lr > 1e-3 else 1e-6 * lr  # the spec prints 6 decimals / 7 significant digits
    assert ETA * factor == pytest.approx(lr, abs=tol)
    assert 10 * ETA * factor == pytest.approx(10 * lr, abs=10 * tol)  # predictor group


def scalar_network(value: float) -> Network:
    layer = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(layer.weight, value)
    return Network({"backbone": layer}, {}, {})


def test_c11_constant_momentum() -> None:
    teacher = EMATarget(scalar_network(1.0), ["backbone"], 0.996)
    student = scalar_network(0.0)
    for n in range(1, 11):
        teacher.update(student, n)
    weight = teacher.network.get_parameter("encoders.backbone.weight")
    assert weight.item() == pytest.approx(0.996 ** 10, abs=1e-6)
    assert 0.996 ** 10 == pytest.approx(0.960712, abs=1e-6)


def test_c11_cosine_momentum_for_cifar20() -> None:
    teacher = EMATarget(scalar_network(1.0), ["backbone"], 0.996, "cosine", 1000 * STEPS)
    assert teacher.momentum(1) == pytest.approx(0.996000, abs=1e-6)
    assert teacher.momentum(117000) == pytest.approx(0.998, abs=1e-9)
    assert teacher.momentum(234000) == pytest.approx(1.0, abs=1e-12)
