"""View pipelines: shapes, ranges, randomness, exactness of the no-op crop (spec cc §9.16),
and the PIL-style ops of the SPICE strong pipeline (spec spice §2.2)."""

from __future__ import annotations

import kornia.augmentation as K
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kornia.geometry.bbox import bbox_generator
from scipy import stats

from corekit.components import augment as A

RANDOM = ["simclr", "byol", "moco_v2", "weak", "strong"]
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
ROUNDING = 1e-5
"""Float rounding of one ``grid_sample`` against ``F.interpolate``: the same bilinear weights,
summed in another order (spec cc §9.16 records 0.0 for kornia's slice crop, before issue #23
made crop, flip and affine one warp)."""


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
    torch.testing.assert_close(view(x), expected, rtol=0.0, atol=ROUNDING)


@pytest.mark.parametrize("channels", [1, 3])
def test_noop_moco_and_byol_are_interpolate(channels):
    x = torch.rand(4, channels, 32, 32)
    common = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "flip_p": 0.0}
    common |= {"jitter_p": 0.0, "gray_p": 0.0, "blur_p": 0.0}
    expected = F.interpolate(x, size=(40, 40), mode="bilinear", align_corners=False)
    close = {"rtol": 0.0, "atol": ROUNDING}
    torch.testing.assert_close(A.moco_v2(40, channels, **common)(x), expected, **close)
    torch.testing.assert_close(A.byol(40, channels, view=2, solarize_p=0.0, **common)(x),
                               expected, **close)


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
    """``rotate``/``shear`` add a random affine before the crop (in the same warp); with every
    other op a no-op the view is the input turned about its centre (the centre pixel stays, the
    rest moves)."""
    still = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "flip_p": 0.0, "jitter_p": 0.0,
             "gray_p": 0.0}
    x = torch.zeros(64, 1, 29, 29)
    x[:, :, 14, :] = 1.0  # a horizontal bar through the centre
    torch.testing.assert_close(A.simclr(29, 1, **still)(x), x, rtol=0.0, atol=ROUNDING)
    view = A.simclr(29, 1, rotate=15.0, shear=10.0, **still)
    assert isinstance(view.ops[0], A.RandomGeometry)
    assert (view.ops[0].degrees, view.ops[0].shear) == (15.0, 10.0)
    y = view(x)
    assert torch.allclose(y[:, :, 14, 14], torch.ones(64, 1), atol=1e-5)
    assert all(not torch.allclose(y[i], x[i], atol=1e-3) for i in range(64))


# -- the geometric ops as one warp (issue #23) ----------------------------------------------
# RandomGeometry replaces kornia's RandomAffine → RandomResizedCrop / RandomCrop →
# RandomHorizontalFlip. Its draws must have the distributions of those ops (built below with
# the arguments the pipelines passed them, spec cc P10), and its one warp must give the image
# the three ops give for the same parameters.

KORNIA_GEOMETRY = {"resample": "bilinear", "same_on_batch": False, "align_corners": False,
                   "p": 1.0, "keepdim": False}
N_DRAWS = 20_000
RATIO = (3 / 4, 4 / 3)
G = A.RandomGeometry
GEOMETRIES = {  # case: ((height, width) of the input, the op)
    "cc/propos mnist": ((28, 28), G(12, A.ResizedCrop((0.3, 1.0), RATIO), 0.0, 15.0, 10.0)),
    "simclr-kmeans mnist": ((28, 28), G(28, A.ResizedCrop((0.3, 1.0), RATIO), 0.5)),
    "cc digits (8 px up to 16)": ((8, 8), G(16, A.ResizedCrop((0.5, 1.0), RATIO), 0.5, 15.0,
                                            10.0)),
    "few crops fit (fallback)": ((28, 28), G(20, A.ResizedCrop((0.3, 1.0), (1.5, 3.0)), 0.3)),
    "simclr default": ((32, 32), G(32, A.ResizedCrop((0.08, 1.0), RATIO), 0.5)),
    "weak": ((16, 16), G(16, A.PaddedCrop(4), 0.5)),
    "wide input": ((20, 30), G(16, A.ResizedCrop((0.3, 1.0), (1.0, 2.0)), 0.5, 15.0, 10.0)),
}


def kornia_ops(geo: A.RandomGeometry) -> tuple[K.RandomAffine | None, K.AugmentationBase2D,
                                               K.RandomHorizontalFlip]:
    """The kornia ops ``geo`` stands for, as the pipelines built them before issue #23."""
    affine = None
    if geo.degrees or geo.shear:
        affine = K.RandomAffine(degrees=geo.degrees, shear=geo.shear, padding_mode="zeros",
                                **KORNIA_GEOMETRY)
    size = (geo.size, geo.size)
    if isinstance(geo.crop, A.ResizedCrop):
        crop = K.RandomResizedCrop(size, scale=geo.crop.scale, ratio=geo.crop.ratio,
                                   cropping_mode="slice", **KORNIA_GEOMETRY)
    else:
        pad = geo.crop.padding
        crop = K.RandomCrop(size, padding=pad if pad > 0 else None, pad_if_needed=False,
                            fill=0.0, padding_mode="constant", cropping_mode="slice",
                            **KORNIA_GEOMETRY)
    flip = K.RandomHorizontalFlip(p=geo.flip_p, p_batch=1.0, same_on_batch=False,
                                  keepdim=False)
    return affine, crop, flip


def padding(geo: A.RandomGeometry) -> int:
    return geo.crop.padding if isinstance(geo.crop, A.PaddedCrop) else 0


def kornia_draws(geo: A.RandomGeometry, n: int, hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """n parameter draws of the kornia ops for height×width ``hw``, in :class:`Geometry`'s
    terms."""
    affine, crop, flip = kornia_ops(geo)
    shape = torch.Size([n, 1, *hw])
    drawn = {"angle": torch.zeros(n), "shear": torch.zeros(n)}
    if affine is not None:
        p = affine.forward_parameters(shape)
        assert torch.equal(p["shear_y"], torch.zeros(n))
        drawn |= {"angle": p["angle"], "shear": p["shear_x"]}
    src = crop.forward_parameters(shape)["src"]
    drawn["x0"], drawn["y0"] = src[:, 0, 0] - padding(geo), src[:, 0, 1] - padding(geo)
    drawn["w"], drawn["h"] = src[:, 1, 0] - src[:, 0, 0] + 1, src[:, 2, 1] - src[:, 0, 1] + 1
    drawn["flip"] = flip.forward_parameters(torch.Size([n, 1, geo.size, geo.size]))["batch_prob"]
    return drawn


def our_draws(geo: A.RandomGeometry, n: int, hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    g = geo.sample(n, *hw, torch.device("cpu"))
    x0, y0, w, h = g.box.unbind(1)
    return {"angle": g.angle, "shear": g.shear, "x0": x0, "y0": y0, "w": w, "h": h,
            "flip": g.flip.float()}


def same_distribution(a: torch.Tensor, b: torch.Tensor) -> float:
    """p-value of "a and b are draws of one distribution": chi-square on the counts of each
    value for integer draws (values seen < 20 times pooled), two-sample KS otherwise."""
    a, b = a.double().numpy(), b.double().numpy()
    if not (np.all(a == np.round(a)) and np.all(b == np.round(b))):
        return float(stats.ks_2samp(a, b).pvalue)
    values, counts = np.unique(np.concatenate([a, b]), return_counts=True)
    common = values[counts >= 20]
    table = np.array([[*(np.sum(x == v) for v in common), np.sum(~np.isin(x, common))]
                      for x in (a, b)])
    table = table[:, table.sum(axis=0) > 0]
    return 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table).pvalue)


def assert_same_draws(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor],
                      case: str) -> None:
    """Each parameter of ``ours`` and ``theirs`` (N_DRAWS draws each) comes from one
    distribution (p > 1e-3) and their means agree to 4 standard errors."""
    for key in ours:
        a, b = ours[key], theirs[key]
        p = same_distribution(a, b)
        assert p > 1e-3, f"{case}: {key} differs from kornia's (p = {p:.2g})"
        se = ((a.var() + b.var()) / N_DRAWS).sqrt()
        assert (a.mean() - b.mean()).abs() <= 4 * se + 1e-9, f"{case}: mean {key}"


@pytest.mark.parametrize("case", list(GEOMETRIES))
def test_geometry_draws_have_the_distributions_of_the_kornia_ops(case):
    """Angle, shear, crop position and size, area fraction, aspect ratio and flip rate of
    N_DRAWS seeded draws against as many of the kornia ops (p > 1e-3 each, and the means
    agree to 4 standard errors)."""
    (height, width), geo = GEOMETRIES[case]
    ours = our_draws(geo, N_DRAWS, (height, width))
    theirs = kornia_draws(geo, N_DRAWS, (height, width))
    for d in (ours, theirs):
        d["area"] = d["w"] * d["h"] / (height * width)
        d["aspect"] = d["w"] / d["h"]
    assert_same_draws(ours, theirs, case)
    pad = padding(geo)
    assert ours["angle"].abs().max() <= geo.degrees and ours["shear"].abs().max() <= geo.shear
    assert ours["x0"].min() >= -pad and (ours["x0"] + ours["w"]).max() <= width + pad
    assert ours["y0"].min() >= -pad and (ours["y0"] + ours["h"]).max() <= height + pad


def kornia_sequence(x: torch.Tensor, geo: A.RandomGeometry, g: A.Geometry) -> torch.Tensor:
    """(B, C, H, W) → (B, C, size, size): the kornia ops one after the other, with the
    parameters ``g``."""
    affine, crop, flip = kornia_ops(geo)
    if affine is not None:
        p = affine.forward_parameters(x.shape) | {"angle": g.angle, "shear_x": g.shear}
        x = affine(x, params=p)
    x0, y0, w, h = (g.box + torch.tensor([padding(geo), padding(geo), 0, 0])).unbind(1)
    p = crop.forward_parameters(x.shape) | {"src": bbox_generator(x0, y0, w, h)}
    x = crop(x, params=p)
    p = flip.forward_parameters(x.shape) | {"batch_prob": g.flip.float()}
    return flip(x, params=p)


def ramp(b: int, height: int, width: int) -> torch.Tensor:
    """(b, 1, height, width) image linear in x and y: bilinear sampling reproduces it exactly."""
    yy, xx = torch.meshgrid(torch.arange(height * 1.0), torch.arange(width * 1.0),
                            indexing="ij")
    return ((xx + 2 * yy + 1) / (width + 2 * height)).expand(b, 1, height, width).clone()


def blob(b: int, side: int) -> torch.Tensor:
    """(b, 1, side, side) off-centre Gaussian spot, near 0 at the borders like a digit."""
    yy, xx = torch.meshgrid(torch.arange(side * 1.0), torch.arange(side * 1.0), indexing="ij")
    r2 = (xx - 0.45 * side) ** 2 + (yy - 0.55 * side) ** 2
    return torch.exp(-r2 / (2 * (0.15 * side) ** 2)).expand(b, 1, side, side).clone()


@pytest.mark.parametrize("case", list(GEOMETRIES))
def test_one_warp_equals_the_kornia_sequence_on_a_linear_image(case):
    """Same parameters, 64 images: the warp equals affine → crop → flip to float rounding
    wherever both read the image only (source ≥ 1.75 px inside: a second bilinear pass over a
    linear image changes nothing, so any error of centre, sign or half-pixel shows)."""
    (height, width), geo = GEOMETRIES[case]
    g = geo.sample(64, height, width, torch.device("cpu"))
    x = ramp(64, height, width)
    ours, theirs = geo.warp(x, g), kornia_sequence(x, geo, g)
    wh = torch.tensor([width, height])
    src = ((geo.grid(g, height, width) + 1) * wh - 1) / 2
    inside = ((src >= 1.75) & (src <= wh - 2.75)).all(dim=-1)[:, None]
    assert inside.float().mean() > 0.1
    torch.testing.assert_close(ours[inside], theirs[inside], rtol=0.0, atol=1e-4)


@pytest.mark.parametrize("size", [28, 12])
def test_one_warp_equals_the_kornia_sequence_on_a_digit_like_image(size):
    """Rotation, slant, crop and flip on a smooth spot, everywhere (zero fill included): within
    the difference of one bilinear pass against two."""
    geo = A.RandomGeometry(size, A.ResizedCrop((0.3, 1.0), RATIO), 0.5, 15.0, 10.0)
    g = geo.sample(64, 28, 28, torch.device("cpu"))
    x = blob(64, 28)
    diff = (geo.warp(x, g) - kornia_sequence(x, geo, g)).abs()
    assert diff.max() < 0.03 and diff.mean() < 3e-3


@pytest.mark.parametrize("case", [c for c, (_, geo) in GEOMETRIES.items() if not geo.degrees])
def test_crop_and_flip_warp_equals_the_kornia_ops_on_noise(case):
    """Without the affine the warp samples where kornia's crop-resize-flip samples: equal on
    uniform noise to float rounding, exactly for the padded crop (nearest sampling)."""
    (height, width), geo = GEOMETRIES[case]
    g = geo.sample(64, height, width, torch.device("cpu"))
    x = torch.rand(64, 3, height, width)
    ours, theirs = geo.warp(x, g), kornia_sequence(x, geo, g)
    if isinstance(geo.crop, A.PaddedCrop):
        assert torch.equal(ours, theirs)
    else:
        torch.testing.assert_close(ours, theirs, rtol=0.0, atol=ROUNDING)


@pytest.mark.parametrize("name", RANDOM)
def test_pipelines_warp_once(name):
    """Every random view holds one RandomGeometry and none of kornia's geometric ops."""
    ops = list(getattr(A, name)(32, 3).ops)
    kornia_geometric = (K.RandomAffine, K.RandomResizedCrop, K.RandomCrop,
                        K.RandomHorizontalFlip)
    assert sum(isinstance(op, A.RandomGeometry) for op in ops) == 1
    assert not any(isinstance(op, kornia_geometric) for op in ops)


JITTERS = {  # case: (brightness, contrast, saturation, hue, p)
    "grey-cc-digits": (0.4, 0.4, 0.0, 0.0, 0.8),
    "rgb-simclr": (0.8, 0.8, 0.8, 0.2, 0.8),
    "rgb-strong-brightness": (1.5, 0.4, 0.4, 0.5, 1.0),
}


def kornia_jitter(jitter: A.RandomColorJitter) -> K.ColorJitter:
    """The kornia op :class:`RandomColorJitter` stands in for."""
    return K.ColorJitter(*jitter.strengths, same_on_batch=False, p=jitter.p, keepdim=False,
                         order=None)


def permutation_code(order: torch.Tensor) -> int:
    """0..23: a permutation of 4 read as a base-4 number (enough to tell the 24 apart)."""
    return int(sum(int(v) * 4**i for i, v in enumerate(order.tolist())))


@pytest.mark.parametrize("case", list(JITTERS))
def test_jitter_draws_have_the_distributions_of_kornias(case):
    """The four factors and the gate of N_DRAWS images, and the step order of 2,000 batches,
    against as many draws of kornia's ColorJitter (p > 1e-3 each, means within 4 standard
    errors)."""
    jitter = A.RandomColorJitter(*JITTERS[case])
    theirs_op = kornia_jitter(jitter)
    f = jitter.sample(N_DRAWS, torch.device("cpu"))
    p = theirs_op.forward_parameters(torch.Size([N_DRAWS, 3, 4, 4]))
    ours = {"brightness": f.brightness, "contrast": f.contrast, "saturation": f.saturation,
            "hue": f.hue, "applied": f.applied.float()}
    theirs = {"brightness": p["brightness_factor"], "contrast": p["contrast_factor"],
              "saturation": p["saturation_factor"], "hue": p["hue_factor"],
              "applied": p["batch_prob"].float()}
    assert_same_draws(ours, theirs, case)
    shape = torch.Size([1, 3, 4, 4])
    orders = [torch.tensor([permutation_code(jitter.sample(1, torch.device("cpu")).order),
                            permutation_code(theirs_op.forward_parameters(shape)["order"])])
              for _ in range(2_000)]
    ours_order, theirs_order = torch.stack(orders).unbind(1)
    assert ours_order.unique().numel() == 24
    assert same_distribution(ours_order, theirs_order) > 1e-3, f"{case}: step order"
    steps = ("brightness", "contrast", "saturation", "hue")
    for key, (low, high) in zip(steps, jitter.ranges(), strict=True):
        assert low <= float(ours[key].min()) and float(ours[key].max()) <= high, key


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("case", list(JITTERS))
def test_jitter_equals_kornias_with_the_same_parameters(case, channels):
    """With the parameters it drew, the jitter gives kornia's ColorJitter's output bit for bit
    (the same kornia.enhance adjustments; the gate as kornia applies it), images left out by
    the gate included."""
    brightness, contrast, saturation, hue, p = JITTERS[case]
    if channels != 3:
        saturation, hue = 0.0, 0.0
    jitter = A.RandomColorJitter(brightness, contrast, saturation, hue, min(p, 0.6))
    x = torch.rand(64, channels, 12, 12)
    for _ in range(4):  # four batches: four step orders
        f = jitter.sample(64, x.device)
        assert 0 < int(f.applied.sum()) < 64
        theirs_op = kornia_jitter(jitter)
        params = theirs_op.forward_parameters(x.shape) | {
            "brightness_factor": f.brightness, "contrast_factor": f.contrast,
            "saturation_factor": f.saturation, "hue_factor": f.hue, "order": f.order,
            "batch_prob": f.applied}
        ours = jitter.jitter(x, f)
        assert torch.equal(ours, theirs_op(x, params=params))
        assert torch.equal(ours[~f.applied], x[~f.applied])


def test_jitter_rejects_bad_strengths():
    for args, match in (((-0.1, 0, 0, 0, 1.0), "brightness"), ((0, 0, 0, 0.6, 1.0), "hue"),
                        ((0, float("inf"), 0, 0, 1.0), "contrast"), ((0, 0, 0, 0, 1.5), "p")):
        with pytest.raises(ValueError, match=match):
            A.RandomColorJitter(*args)


@pytest.mark.parametrize("name", ["simclr", "byol", "moco_v2"])
def test_pipelines_jitter_in_one_batched_op(name):
    """The colour jitter of every view that has one is RandomColorJitter, not kornia's."""
    ops = list(getattr(A, name)(32, 3).ops)
    assert sum(isinstance(op, A.RandomColorJitter) for op in ops) == 1
    assert not any(isinstance(op, (K.ColorJitter, K.ColorJiggle)) for op in ops)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_geometry_runs_on_the_batch_device():
    view = A.simclr(12, 1, crop_scale=(0.3, 1.0), rotate=15.0, shear=10.0)
    x = torch.rand(8, 1, 28, 28, device="cuda")
    g = view.ops[0].sample(8, 28, 28, x.device)
    assert g.box.device.type == g.angle.device.type == g.flip.device.type == "cuda"
    assert view(x).device.type == "cuda"
