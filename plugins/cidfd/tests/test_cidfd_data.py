"""Stripe-MNIST and Stripes (specs/cidfd.md §6, §2.8): the generator's families, periods and
widths, determinism (same seed → identical bytes), independence of the background stream from
the target's, the pixel-wise max, the shared normalisation and the aligned stripe families."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from deepclust_cidfd import data as sd

from corekit import BUILTIN_DATASETS, DataError, ImageSet, load_dataset


def params_of(family: int, period: int, width: int, phase: int) -> sd.StripeParams:
    return sd.StripeParams(*(np.array([x]) for x in (family, period, width, phase)))


@pytest.mark.parametrize("family, constant_along", [(0, (0, 1)), (1, (1, 0)), (2, (1, -1)),
                                                    (3, (1, 1))])
def test_stripe_family_orientation(family, constant_along):
    """Horizontal stripes are constant along a row, vertical along a column, 45° along
    r + c = const ("/"), 135° along r − c = const ("\\")."""
    image = sd.render_stripes(params_of(family, 5, 2, 1), 28)[0].astype(int)
    dr, dc = constant_along
    r0, c0 = 10, 10
    for step in range(1, 8):
        assert image[r0 + step * dr, c0 + step * dc] == image[r0, c0]
    assert image.max() == sd.STRIPE_VALUE and image.min() == 0


@pytest.mark.parametrize("period, width", [(4, 1), (4, 2), (7, 2), (8, 1)])
def test_stripe_period_and_width(period, width):
    row = sd.render_stripes(params_of(1, period, width, 0), 28)[0][0] > 0  # vertical: one row
    on = np.flatnonzero(row)
    assert on[0] == 0 and row[:period].sum() == width
    assert np.array_equal(row[period:2 * period], row[:period])  # periodic


def test_drawn_parameters_cover_the_spec_ranges():
    params = sd.draw_stripes(20_000, sd.stripe_rng(sd.TARGET_STREAM))
    assert set(params.family.tolist()) == {0, 1, 2, 3}
    assert set(params.period.tolist()) == {4, 5, 6, 7, 8}
    assert set(params.width.tolist()) == {1, 2}
    assert (params.phase >= 0).all() and (params.phase < params.period).all()
    counts = np.bincount(params.family) / len(params)
    assert np.abs(counts - 0.25).max() < 0.02  # families uniform


def test_dataset_determinism_same_seed_identical_bytes():
    digits = np.random.default_rng(0).integers(0, 256, (500, 28, 28), dtype=np.uint8)
    first, p1 = sd.stripe_mnist_images(digits, seed=11)
    again, p2 = sd.stripe_mnist_images(digits.copy(), seed=11)
    assert first.tobytes() == again.tobytes() and np.array_equal(p1.family, p2.family)
    other, _ = sd.stripe_mnist_images(digits, seed=12)
    assert other.tobytes() != first.tobytes()
    bg1, _ = sd.stripes_images(300, seed=11)
    bg2, _ = sd.stripes_images(300, seed=11)
    assert bg1.tobytes() == bg2.tobytes()
    assert sd.stripes_images(300, seed=12)[0].tobytes() != bg1.tobytes()


def test_stripes_loader_is_deterministic_and_takes_no_path():
    a = sd.load_stripes()
    b = sd.stripes_images()[0]  # regenerated from scratch, not through the cache
    assert a.images[:, 0].numpy().tobytes() == b.tobytes()
    assert len(a) == sd.N_BACKGROUND == 10_000 and a.num_classes == 4 and a.channels == 1
    assert torch.equal(a.labels, a.families)  # nuisance label: the stripe family
    with pytest.raises(DataError, match="takes no path"):
        sd.load_stripes(Path("somewhere"))


def test_background_and_target_generation_are_disjoint_streams():
    """The background draws come from their own stream (§6 "disjoint seed", "not used to
    build the target"): matched indices agree only at chance level, the background is not a
    prefix of the target's draws, and generating one set does not move the other."""
    n = sd.N_BACKGROUND
    target = sd.draw_stripes(60_000, sd.stripe_rng(sd.TARGET_STREAM))
    background = sd.draw_stripes(n, sd.stripe_rng(sd.BACKGROUND_STREAM))
    keys_t = np.stack([target.family, target.period, target.width, target.phase], 1)
    keys_b = np.stack([background.family, background.period, background.width,
                       background.phase], 1)
    same = (keys_t[:n] == keys_b).all(1).mean()
    assert same < 0.02  # chance level is about 1/220 patterns
    for column, chance in zip(range(3), (1 / 4, 1 / 5, 1 / 2), strict=True):  # per parameter
        assert abs((keys_t[:n, column] == keys_b[:, column]).mean() - chance) < 0.03
    for offset in range(0, 60_000 - n + 1, 1000):  # not a shifted copy either
        assert (keys_t[offset:offset + n] == keys_b).all(1).mean() < 0.02
    again = sd.draw_stripes(60_000, sd.stripe_rng(sd.TARGET_STREAM))
    assert np.array_equal(again.phase, target.phase)


def test_shared_normalisation_statistics():
    """Both sets carry the same mean/std (§2.3: f_θ sees target images scaled like its
    stage-1 inputs); the constants are the Stripe-MNIST statistics."""
    stripes = sd.load_stripes()
    assert stripes.mean == sd.STATS_MEAN and stripes.std == sd.STATS_STD


def test_stripe_mnist_loader(stripe_mnist, mnist_dir):
    assert isinstance(stripe_mnist, ImageSet)
    assert len(stripe_mnist) == 60_000 and stripe_mnist.num_classes == 10
    assert stripe_mnist.mean == sd.STATS_MEAN and stripe_mnist.std == sd.STATS_STD
    pixels = stripe_mnist.images.double() / 255
    assert pixels.mean().item() == pytest.approx(sd.STATS_MEAN[0], abs=1e-3)
    assert pixels.std(unbiased=False).item() == pytest.approx(sd.STATS_STD[0], abs=1e-3)
    mnist = BUILTIN_DATASETS["mnist-train"](mnist_dir)
    assert torch.equal(stripe_mnist.labels, mnist.labels)  # labels are the digits
    stripes = sd.render_stripes(sd.draw_stripes(60_000, sd.stripe_rng(sd.TARGET_STREAM)))
    expected = np.maximum(mnist.images[:, 0].numpy(), stripes)
    assert stripe_mnist.images[:, 0].numpy().tobytes() == expected.tobytes()  # pixel-wise max
    assert load_dataset(f"stripe-mnist:{mnist_dir}", loaders={"stripe-mnist": sd.load_stripe_mnist}
                        ).images.data_ptr() == stripe_mnist.images.data_ptr()  # cached


def test_subset_keeps_the_stripe_families_aligned():
    """``StripeSet.subset`` picks the images the core's ``ImageSet.subset`` picks and slices
    the families alike (each image encodes its own index in two pixels here)."""
    n = 1000
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) // 256
    images[:, 0, 0, 1] = torch.arange(n) % 256
    labels, families = torch.arange(n) % 10, (torch.arange(n) * 7) % 4
    full = sd.StripeSet("s", images, labels, 10, (0.5,), (0.5,), families=families)
    sub = full.subset(300, seed=3)
    reference = ImageSet("plain", images, labels, 10, (0.5,), (0.5,)).subset(300, seed=3)
    assert isinstance(sub, sd.StripeSet) and torch.equal(sub.images, reference.images)
    index = sub.images[:, 0, 0, 0].long() * 256 + sub.images[:, 0, 0, 1].long()
    assert torch.equal(sub.labels, index % 10) and torch.equal(sub.families, (index * 7) % 4)
    assert full.subset(n, seed=3) is full
    with pytest.raises(ValueError, match="families"):
        sd.StripeSet("s", images, labels, 10, (0.5,), (0.5,), families=families[:5])
