import math

import pytest

from corekit.components import schedules
from corekit.plugins import load_plugins


def test_cosine_closed_form():
    # 4 steps per epoch, 10 warm-up epochs, then 100 cosine epochs.
    s = schedules.Cosine(steps_per_epoch=4, epochs=110, warmup_epochs=10)
    assert s.factor(20) == pytest.approx(0.5)  # half-way through warm-up
    assert s.factor(40) == pytest.approx(1.0)  # end of warm-up
    assert s.factor(4 * 60) == pytest.approx(0.5)  # middle of the cosine
    assert s.factor(4 * 110) == pytest.approx(0.0, abs=1e-12)  # end
    assert s.factor(4 * 200) == pytest.approx(0.0, abs=1e-12)  # held past the end


def test_cosine_propos_divides_by_1000():
    # hadis.md C10: 234 it/epoch, W = 50, C = 1000, 1000 epochs, base lr 0.05.
    s = schedules.Cosine(steps_per_epoch=234, epochs=1000, warmup_epochs=50, cosine_epochs=1000)
    # By hand at step 122850 (epoch 525): ½(1 + cos(π·475/1000)) = ½(1 + 0.0784591) = 0.5392295.
    assert s.factor(122850) == pytest.approx(0.5392295, abs=1e-7)
    table = {1: 4.273504e-6, 5850: 0.025, 11699: 0.049996, 11700: 0.05, 122850: 0.026961,
             234000: 3.077915e-4}
    for step, lr in table.items():
        assert 0.05 * s.factor(step) == pytest.approx(lr, rel=2e-5), step
    # Dividing by 950 (the default C = epochs − W) would end at 0, not at 3.08e-4.
    assert schedules.Cosine(steps_per_epoch=234, epochs=1000, warmup_epochs=50).factor(
        234000) == pytest.approx(0.0, abs=1e-12)


def test_multistep_at_milestones():
    s = schedules.MultiStep(steps_per_epoch=10, epochs=10, milestones=[2, 5.5], gamma=0.2,
                            warmup_epochs=1)
    assert s.factor(5) == pytest.approx(0.5)  # warm-up
    assert s.factor(10) == 1.0
    assert s.factor(19) == 1.0
    assert s.factor(20) == pytest.approx(0.2)  # e = 2: the milestone itself counts
    assert s.factor(54) == pytest.approx(0.2)
    assert s.factor(55) == pytest.approx(0.04)  # fractional milestone 5.5
    assert s.factor(100) == pytest.approx(0.04)


def test_fixmatch_cosine_seven_sixteenths():
    total = 8 * 16  # K
    s = schedules.FixMatchCosine(steps_per_epoch=8, epochs=16)
    assert s.factor(1) == 1.0  # k = 0
    assert s.factor(total // 2 + 1) == pytest.approx(math.cos(7 * math.pi / 32))
    assert s.factor(total + 1) == pytest.approx(math.cos(7 * math.pi / 16))  # k = K
    assert s.factor(total + 1) == pytest.approx(0.19509, abs=1e-5)


@pytest.mark.parametrize("cls, options, match", [
    (schedules.Constant, {"warmup_epochs": -1}, "warmup_epochs"),
    (schedules.Cosine, {"cosine_epochs": 0}, "cosine_epochs"),
    (schedules.MultiStep, {"milestones": [5, 2]}, "milestones"),
    (schedules.MultiStep, {"milestones": [2, 2]}, "milestones"),
    (schedules.MultiStep, {"milestones": [-1]}, "milestones"),
    (schedules.MultiStep, {"milestones": [2], "gamma": 0}, "gamma"),
    (schedules.FixMatchCosine, {"steps_per_epoch": 0}, "steps_per_epoch"),
])
def test_invalid_options_raise(cls, options, match):
    kwargs = {"steps_per_epoch": 10, "epochs": 5, **options}
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("name, cls, options", [
    ("constant", schedules.Constant, {}), ("cosine", schedules.Cosine, {"warmup_epochs": 1}),
    ("multistep", schedules.MultiStep, {"milestones": [3]}),
    ("fixmatch_cosine", schedules.FixMatchCosine, {}),
])
def test_registered_and_satisfy_protocol(name, cls, options):
    registry = load_plugins().registry
    assert registry.get("schedule", name).obj is cls
    built = registry.build("schedule", name, steps_per_epoch=5, epochs=4, **options)
    assert isinstance(built, schedules.Schedule)
    assert 0.0 <= built.factor(7) <= 1.0
