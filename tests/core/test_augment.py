"""View pipelines: shapes, ranges, randomness, exactness of the no-op crop (spec cc §9.16),
and the PIL-style ops of the SPICE strong pipeline (spec spice §2.2)."""

from __future__ import annotations

import kornia.augmentation as K
import pytest
import torch
import torch.nn.functional as F

from corekit.components import augment as A

RANDOM = ["simclr", "byol", "moco_v2", "weak", "strong"]
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", [*RANDOM, "identity", "eval_transform"])
def test_shape_and_range(name, channels):
    view = getattr(A, name)(24, channels)
    x = torch.rand(4, channels, 32, 32)
    y = view(x)
    assert y.shape == (4, channels, 24, 24)
    assert y.dtype == x.dtype
    assert y.min() >= 0.0 and y.max() <= 1.0


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", RANDOM)
def test_two_calls_differ_and_samples_differ(name, channels):
    view = getattr(A, name)(32, channels)
    x = torch.rand(1, channels, 32, 32).repeat(8, 1, 1, 1)
    first, second = view(x), view(x)
    assert not torch.equal(first, second)
    assert any(not torch.equal(first[0], first[i]) for i in range(1, 8))


def test_fixmatch_strong_variant():
    view = A.strong(32, 3, MEAN, STD, variant="fixmatch")
    x = torch.rand(4, 3, 32, 32)
    y = view(x)
    assert y.shape == (4, 3, 32, 32)
    assert not torch.equal(y, view(x))


def test_cc_9_16_upscale_to_224():
    view = A.simclr(224, 3, strength=0.5)
    x = torch.rand(8, 3, 32, 32)
    y = view(x)
    assert y.shape == (8, 3, 224, 224)
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert not torch.equal(y, view(x))


def test_cc_9_16_noop_crop_is_bilinear_interpolate():
    x = torch.rand(8, 3, 32, 32)
    view = A.simclr(
        224,
        3,
        strength=1.0,
        blur=True,
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=0.0,
        gray_p=0.0,
        blur_p=0.0,
    )
    expected = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    assert torch.equal(view(x), expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_noop_moco_and_byol_are_interpolate(channels):
    x = torch.rand(4, channels, 32, 32)
    common = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "flip_p": 0.0}
    common |= {"jitter_p": 0.0, "gray_p": 0.0, "blur_p": 0.0}
    expected = F.interpolate(x, size=(40, 40), mode="bilinear", align_corners=False)
    assert torch.equal(A.moco_v2(40, channels, **common)(x), expected)
    assert torch.equal(A.byol(40, channels, view=2, solarize_p=0.0, **common)(x), expected)


def test_normalisation():
    x = torch.rand(2, 3, 32, 32)
    y = A.identity(32, 3, MEAN, STD)(x)
    expected = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(y, expected)
    assert y.min() < 0.0


def test_eval_transform_resizes_with_antialias():
    x = torch.rand(2, 1, 64, 64)
    y = A.eval_transform(32, 1)(x)
    expected = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(y, expected)
    assert torch.equal(A.eval_transform(64, 1)(x), x)


def test_weak_without_padding_or_flip_is_identity():
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(A.weak(16, 3, padding=0, flip_p=0.0)(x), x)


def test_weak_padding_shifts_by_at_most_four():
    x = torch.rand(16, 1, 16, 16) + 0.1
    y = A.weak(16, 1, flip_p=0.0)(x)
    zero_rows = (y == 0).all(dim=-1).sum(dim=-1)
    assert zero_rows.max() <= 4
    assert (y == 0).any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        A.simclr(32, 3)(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="entries"):
        A.simclr(32, 1, MEAN, STD)
    with pytest.raises(ValueError, match="both"):
        A.identity(32, 3, MEAN, None)
    with pytest.raises(ValueError, match="variant"):
        A.strong(32, variant="autoaugment")
    with pytest.raises(ValueError, match="view"):
        A.byol(32, view=3)
    with pytest.raises(ValueError, match="odd"):
        A.simclr(32, blur=True, blur_kernel=4)


def test_blur_kernel_is_ten_percent_odd():
    assert A._blur_kernel(224, None) == 23
    assert A._blur_kernel(96, None) == 9
    assert A._blur_kernel(32, None) == 3
    assert A._blur_kernel(4, 13) == 7


def test_strong_scan_cutout_fills_zero_after_normalisation():
    x = torch.rand(6, 3, 32, 32) * 0.5 + 0.5
    plain = A.identity(32, 3, MEAN, STD)(x)
    quiet = {"n_ops": 0, "flip_p": 0.0}
    assert torch.equal(A.strong(32, 3, MEAN, STD, cutout_p=0.0, **quiet)(x), plain)
    y = A.strong(32, 3, MEAN, STD, cutout=8, **quiet)(x)
    changed = (y != plain).any(dim=1)
    assert torch.equal((y == 0).all(dim=1), changed)
    sides = changed.any(dim=2).sum(dim=1)
    assert sides.max() <= 8


def test_cutout_hole_sizes():
    ones = torch.ones(64, 1, 20, 20)
    scan = A.Cutout("scan", 5, (0.0,), 1.0)(ones)
    rows = (scan == 0).any(dim=-1).sum(dim=(1, 2))
    assert rows.max() <= 4 and set(rows.tolist()) <= {0, 1, 2, 3, 4}
    fix = A.Cutout("fixmatch", 0.5, (0.0,), 1.0)(ones)
    rows = (fix == 0).any(dim=-1).sum(dim=(1, 2))
    assert rows.min() >= 1 and rows.max() <= 11
    assert torch.equal(A.Cutout("fixmatch", 0.5, (0.0,), 0.0)(ones), ones)


def test_random_ops_stay_in_range_and_vary():
    ops = A.RandomOps(n_ops=4)
    x = torch.rand(1, 3, 16, 16).repeat(32, 1, 1, 1)
    y = ops(x)
    assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 1.0
    distinct = {tuple(img.flatten().tolist()) for img in y}
    assert len(distinct) > 16
    assert torch.equal(A.RandomOps(n_ops=0)(x), x)


def grid() -> torch.Tensor:
    return (torch.arange(64.0).view(1, 1, 8, 8) + 1) / 65


def test_translate_x_samples_from_the_right():
    y = A._translate_x(grid(), torch.tensor([0.25]))
    assert torch.equal(y[..., :6], grid()[..., 2:])
    assert torch.equal(y[..., 6:], torch.zeros(1, 1, 8, 2))


def test_translate_y_samples_from_below():
    y = A._translate_y(grid(), torch.tensor([-0.25]))
    assert torch.equal(y[..., 2:, :], grid()[..., :6, :])


def test_shear_x_keeps_top_row():
    y = A._shear_x(grid(), torch.tensor([0.1]))
    assert torch.equal(y[..., 0, :], grid()[..., 0, :])


def test_rotate_90_counter_clockwise():
    y = A._rotate(grid(), torch.tensor([90.0]))
    assert torch.equal(y[0, 0, 0], grid()[0, 0, :, -1])


def test_pixel_ops():
    x = torch.tensor([0.5, 0.2, 0.99]).view(3, 1, 1, 1)
    torch.testing.assert_close(
        A._posterize(x, torch.tensor([4.0, 4.5, 7.9])).flatten() * 255,
        torch.tensor([128.0, 48.0, 252.0]),
    )
    torch.testing.assert_close(
        A._solarize_at(x, torch.tensor([128.0, 128.0, 0.0])).flatten(),
        torch.tensor([0.5, 0.2, 0.01]),
    )
    torch.testing.assert_close(A._brightness(x, torch.full((3,), 0.5)), x * 0.5)
    img = torch.rand(2, 3, 8, 8) * 0.5 + 0.25
    stretched = A._autocontrast(img, torch.zeros(2))
    assert torch.allclose(stretched.amin(dim=(-2, -1)), torch.zeros(2, 3))
    assert torch.allclose(stretched.amax(dim=(-2, -1)), torch.ones(2, 3))
    grey = A._color(img, torch.zeros(2))
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    flat = A._contrast(img, torch.zeros(2))
    assert (flat == flat[..., :1, :1]).all()


def test_simclr_rotate_and_shear_turn_about_the_image_centre():
    """``rotate``/``shear`` add one RandomAffine before the crop; with every other op a no-op the
    view is the input turned about its centre (the centre pixel stays, the rest moves)."""
    still = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "flip_p": 0.0, "jitter_p": 0.0,
             "gray_p": 0.0}
    x = torch.zeros(64, 1, 29, 29)
    x[:, :, 14, :] = 1.0  # a horizontal bar through the centre
    assert torch.equal(A.simclr(29, 1, **still)(x), x)
    view = A.simclr(29, 1, rotate=15.0, shear=10.0, **still)
    assert isinstance(view.ops[0], K.RandomAffine)
    y = view(x)
    assert torch.allclose(y[:, :, 14, 14], torch.ones(64, 1), atol=1e-5)
    assert all(not torch.allclose(y[i], x[i], atol=1e-3) for i in range(64))
