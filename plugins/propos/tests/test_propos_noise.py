"""The latent noise head (specs/hadis.md §2.3, D6, D7) and DSA with σ > 0 (§9 C3): the noise is
drawn with the right σ from ``start_epoch`` on, is exactly zero before it and in eval mode, and
reaches the predictor of a composed propos recipe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from deepclust_propos import LatentGaussianNoise, psa

from corekit.engine.trainer import StageTrainer
from corekit.lifecycle import StageContext
from corekit.step import Step


def context(epoch: int, epochs: int = 10) -> StageContext:
    """The StageContext an ``on_epoch_start`` hook receives at 0-based ``epoch``."""
    return StageContext(stage="main", epochs=epochs, steps_per_epoch=1, model=None, state={},
                        features=lambda spec: torch.zeros(0), out_dir=Path("."),
                        log=lambda _: None, epoch=epoch)


def enter(head: LatentGaussianNoise, epoch: int) -> LatentGaussianNoise:
    head.on_epoch_start(context(epoch))
    return head


def test_noise_has_std_sigma_from_start_epoch_on() -> None:
    """On 2¹⁸ entries the empirical std of z − q is within 1 % of σ (its standard error is
    σ/√(2n) ≈ 0.14 %), its mean within 4 standard errors of 0, and it is independent of q."""
    head = LatentGaussianNoise(256, std=0.5, start_epoch=3).train()
    q = 100 * torch.randn(1024, 256)
    enter(head, 3)
    assert head.sigma == 0.5
    noise = (head(q) - q).double()
    n = noise.numel()
    assert noise.std().item() == pytest.approx(0.5, rel=0.01)
    assert abs(noise.mean().item()) < 4 * 0.5 / n ** 0.5
    assert abs(torch.corrcoef(torch.stack([noise.flatten(), q.double().flatten()]))[0, 1]) < 0.01
    for std in (0.001, 2.0):
        small = enter(LatentGaussianNoise(256, std=std, start_epoch=0).train(), 0)
        assert (small(q) - q).double().std().item() == pytest.approx(std, rel=0.02)


def test_noise_is_exactly_zero_before_start_epoch() -> None:
    head = LatentGaussianNoise(64, std=0.5, start_epoch=3).train()
    q = torch.randn(256, 64)
    for epoch in range(3):
        enter(head, epoch)
        assert head.sigma == 0.0
        assert torch.equal(head(q), q)
    enter(head, 3)
    assert not torch.equal(head(q), q)
    enter(head, 9)
    assert head.sigma == 0.5 and not torch.equal(head(q), q)


def test_noise_is_drawn_per_call_and_exactly_zero_in_eval_mode() -> None:
    head = enter(LatentGaussianNoise(8, std=0.1), 0).train()
    q = torch.zeros(4, 8)
    assert not torch.equal(head(q), head(q))
    assert torch.equal(head.eval()(q), q)
    assert head.sigma == 0.1  # eval mode is the identity although σ > 0


def test_noise_adds_to_the_raw_projection_and_keeps_its_width() -> None:
    head = enter(LatentGaussianNoise(256, std=0.001), 0).train()
    assert head.out_dim == 256
    assert head.sigma == 0.001
    q = 1000 * torch.ones(2, 256)
    noise = head(q) - q
    assert 0 < noise.abs().max().item() < 0.01  # σ is absolute, not relative to ‖q‖


def test_negative_std_is_rejected() -> None:
    with pytest.raises(ValueError, match="std"):
        LatentGaussianNoise(4, std=-1.0)


def predictions(trainer: StageTrainer, epoch: int) -> list[Step]:
    """Two fresh steps on the same views at ``epoch``: what each reads from the network."""
    trainer.ctx.epoch = epoch
    trainer.hooks.fire("on_epoch_start", trainer.ctx)
    data = trainer.composed.train_set
    indices = torch.arange(32)
    views = trainer.views(data.batch(indices))
    steps = [trainer.make_step(indices, views, epoch) for _ in range(2)]
    return steps


def test_noise_reaches_the_predictor_of_the_composed_recipe(
        stage_trainer: Callable[..., StageTrainer]) -> None:
    trainer = stage_trainer("propos")
    noisy = trainer.composed.model.online.part("noisy")
    assert isinstance(noisy, LatentGaussianNoise)
    start = noisy.start_epoch
    assert start == 5 and noisy.std == 0.001

    before = predictions(trainer, start - 1)
    assert noisy.sigma == 0.0
    assert torch.equal(before[0].output("noisy"), before[0].output("proj"))
    assert torch.equal(before[0].output("pred"), before[1].output("pred"))

    after = predictions(trainer, start)
    assert noisy.sigma == 0.001
    a, b = (step.output("pred") for step in after)
    assert not torch.equal(a, b)
    for step in after:
        drawn = (step.output("noisy") - step.output("proj")).double()
        assert drawn.std().item() == pytest.approx(0.001, rel=0.1)
    # the target branch and the projection see no noise: equal across the two steps
    assert torch.equal(after[0].output("proj"), after[1].output("proj"))
    assert torch.equal(after[0].output("proj", branch="target"),
                       after[1].output("proj", branch="target"))


def unit(*degrees: float) -> torch.Tensor:
    radians = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([radians.cos(), radians.sin()], dim=1).float()


def test_c3_dsa_with_sigma_is_seeded_and_sigma_zero_reproduces_c3() -> None:
    k = unit(0, 60, 90, 180)
    p = torch.cat([2 * unit(20), unit(25), 0.5 * unit(140), unit(200)])

    def dsa(std: float, seed: int) -> float:
        head = enter(LatentGaussianNoise(2, std=std), 0).train()
        torch.manual_seed(seed)
        return psa(head(p), k).item()

    assert dsa(0.0, 0) == pytest.approx(-1.670662, abs=1e-5)
    assert dsa(0.05, 0) == dsa(0.05, 0)
    assert dsa(0.05, 0) != dsa(0.05, 1)
    assert dsa(0.05, 0) != pytest.approx(-1.670662, abs=1e-5)
    assert dsa(1e-6, 0) == pytest.approx(-1.670662, abs=1e-4)
