"""View pipelines: batched, on-device kornia augmentations (CC, ProPos/HaDis, SPICE).

Every factory has the form ``factory(size, channels=3, mean=None, std=None, **options)`` and
returns a module mapping a float batch B×C×H×W in [0, 1] (any device) to one view
B×C×size×size, normalised with ``mean``/``std`` when given and left in [0, 1] otherwise.
Random parameters are drawn per sample and every kornia argument is passed explicitly
(several kornia defaults differ from torchvision). The geometric ops of a view
(rotation, shear, crop, flip) are drawn as the kornia ops draw them and applied as one warp
(:class:`RandomGeometry`, issue #23), and the colour jitter is one batched op
(:class:`RandomColorJitter`). Colour ops that need RGB (saturation, hue, grayscale) are skipped
for images that do not have three channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import kornia.augmentation as K
import kornia.enhance as KE
import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_rotation_matrix2d, warp_affine
from torch import Tensor, nn

from corekit.components.color_jitter import RandomColorJitter

_LUMA = (0.299, 0.587, 0.114)
_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_FIXMATCH_FILL = (125.0 / 255.0, 123.0 / 255.0, 114.0 / 255.0)

_Jitter = tuple[float, float, float, float]


def _resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize to size×size (antialiased, ``align_corners=False``); a no-op at size."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class ViewPipeline(nn.Module):
    """One stochastic view: optional resize to size×size, the ops in order, then normalisation.

    Shared frame of every pipeline in this module."""

    def __init__(
        self,
        size: int,
        channels: int,
        ops: Sequence[nn.Module],
        mean: tuple[float, ...] | None,
        std: tuple[float, ...] | None,
        resize: bool,
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        for name, stats in (("mean", mean), ("std", std)):
            if stats is not None and len(stats) != channels:
                raise ValueError(f"{name} has {len(stats)} entries for {channels} channels")
        self.size = size
        self.channels = channels
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.resize = resize
        self.ops = nn.Sequential(*ops)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            shape = tuple(x.shape)
            raise ValueError(f"expected a B×C×H×W batch with channels={self.channels}, got {shape}")
        if self.resize:
            x = _resize(x, self.size)
        x = self.ops(x)
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x


def _is_range(pair: Sequence[float]) -> bool:
    """Whether ``pair`` is two finite numbers ``lo, hi`` with ``0 < lo <= hi``."""
    numbers = len(pair) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pair)
    return numbers and 0 < pair[0] <= pair[1]


@dataclass(frozen=True)
class ResizedCrop:
    """``RandomResizedCrop`` draws (kornia 0.9.0 ``ResizedCropGenerator``): ten
    candidates of area ``U(scale)·H·W`` and log-uniform aspect ratio ``r = w/h`` in ``ratio``,
    ``w = round(√(area·r))``, ``h = round(√(area/r))``; the first that fits the image, else
    the whole image (clipped to ``ratio``); top-left corner uniform over integer positions."""

    scale: tuple[float, float]
    ratio: tuple[float, float]

    def __post_init__(self) -> None:
        for name, pair in (("crop_scale", self.scale), ("crop_ratio", self.ratio)):
            if not _is_range(pair):
                raise ValueError(f"{name} must be [lo, hi] with 0 < lo <= hi, got {pair!r}")

    def boxes(self, batch: int, height: int, width: int, size: int, device: torch.device
              ) -> Tensor:
        """(B, 4) crop boxes ``x0, y0, w, h`` in input pixels; ``size`` is not used."""
        (s0, s1), (log_r0, log_r1) = self.scale, (math.log(r) for r in self.ratio)
        u = torch.rand(batch, 10, 2, device=device)
        area = (s0 + (s1 - s0) * u[..., :1]) * (height * width)
        aspect = torch.exp(log_r0 + (log_r1 - log_r0) * u[..., 1:])
        wh = torch.sqrt(area * torch.cat([aspect, 1 / aspect], dim=-1)).round()  # (B, 10, 2)
        limit = wh.new_tensor([width, height])
        fits = ((wh > 0) & (wh <= limit)).all(dim=-1)
        first = wh[torch.arange(batch, device=device), fits.int().argmax(dim=1)]
        fallback = wh.new_tensor(self._fallback(height, width))
        wh = torch.where(fits.any(dim=1, keepdim=True), first, fallback)
        wh = wh.clamp_min(1).minimum(limit)
        return _place(wh, limit - wh + 1)

    def _fallback(self, height: int, width: int) -> tuple[float, float]:
        """(w, h) when no candidate fits: the whole image, cut to the nearest allowed ratio."""
        r0, r1 = min(self.ratio), max(self.ratio)
        if width / height < r0:
            return float(width), float(round(width / r0))
        if width / height > r1:
            return float(round(height * r1)), float(height)
        return float(width), float(height)


@dataclass(frozen=True)
class PaddedCrop:
    """``RandomCrop(size, padding)`` draws: a size×size window at a uniform integer position of
    the input zero-padded by ``padding`` on every side (``padding = 0``: the window is the
    whole size×size input)."""

    padding: int

    def boxes(self, batch: int, height: int, width: int, size: int, device: torch.device
              ) -> Tensor:
        """(B, 4) boxes ``x0, y0, size, size`` in input pixels (``x0, y0 ≥ −padding``)."""
        wh = torch.full((batch, 2), float(size), device=device)
        span = wh.new_tensor([width, height]) + (2 * self.padding + 1) - wh
        return _place(wh, span) - wh.new_tensor([self.padding, self.padding, 0.0, 0.0])


def _place(wh: Tensor, span: Tensor) -> Tensor:
    """(B, 4) boxes ``x0, y0, w, h`` of sizes ``wh`` (B, 2) with ``x0 ~ randint[0, span_x)``,
    ``y0 ~ randint[0, span_y)`` (``span`` (B, 2))."""
    return torch.cat([(torch.rand_like(wh) * span).floor(), wh], dim=1)


@dataclass(frozen=True)
class Geometry:
    """Parameters drawn by :class:`RandomGeometry`, one row per image of a batch of B:
    ``angle`` (B,) degrees (positive = clockwise, as kornia's ``RandomAffine``), ``shear`` (B,)
    degrees along x, ``box`` (B, 4) crop ``x0, y0, w, h`` in input pixels, ``flip`` (B,) bool."""

    angle: Tensor
    shear: Tensor
    box: Tensor
    flip: Tensor


class RandomGeometry(nn.Module):
    """Rotation and x-shear about the centre, a crop resized to size×size, a horizontal flip,
    all drawn per image and applied as ONE warp of each image.

    The draws are those of the kornia ops it replaces, in this order:
    ``RandomAffine(degrees, shear=shear, padding_mode="zeros")`` (angle ~ U(−degrees, degrees),
    x-shear ~ U(−shear, shear)°, about pixel ((W−1)/2, (H−1)/2)), then ``crop`` (``ResizedCrop``:
    ``RandomResizedCrop(cropping_mode="slice")``, or ``PaddedCrop``: ``RandomCrop`` with zero
    padding), then ``RandomHorizontalFlip(p=flip_p)``; all with ``p=1``, bilinear,
    ``align_corners=False``, ``same_on_batch=False``. The output pixel centres map through flip,
    crop-and-resize (half-pixel centres, clamped to the crop box as ``F.interpolate`` clamps)
    and the inverse affine onto the input, which is sampled once (zero fill). Maps made only of
    integer shifts and flips (no affine, crop at output size) sample nearest: exact copies."""

    def __init__(self, size: int, crop: ResizedCrop | PaddedCrop, flip_p: float,
                 degrees: float = 0.0, shear: float = 0.0) -> None:
        super().__init__()
        for name, angle in (("rotate", degrees), ("shear", shear)):
            if not 0 <= angle <= 180:
                raise ValueError(f"{name} is drawn from U(-{name}, {name}) degrees: give "
                                 f"0 <= {name} <= 180, got {angle!r}")
        self.size = size
        self.crop = crop
        self.flip_p = flip_p
        self.degrees = degrees
        self.shear = shear
        integer_map = isinstance(crop, PaddedCrop) and not (degrees or shear)
        self.mode = "nearest" if integer_map else "bilinear"

    def sample(self, batch: int, height: int, width: int, device: torch.device) -> Geometry:
        """Draw the parameters for a batch of ``batch`` images of height×width."""
        angle = torch.empty(batch, device=device).uniform_(-self.degrees, self.degrees)
        shear = torch.empty(batch, device=device).uniform_(-self.shear, self.shear)
        box = self.crop.boxes(batch, height, width, self.size, device)
        flip = torch.rand(batch, device=device) < self.flip_p
        return Geometry(angle, shear, box, flip)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, C, size, size), new parameters per image."""
        return self.warp(x, self.sample(x.shape[0], x.shape[-2], x.shape[-1], x.device))

    def warp(self, x: Tensor, g: Geometry) -> Tensor:
        """(B, C, H, W) → (B, C, size, size) with the parameters ``g``."""
        grid = self.grid(g, x.shape[-2], x.shape[-1]).to(x.dtype)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode="zeros", align_corners=False)

    def grid(self, g: Geometry, height: int, width: int) -> Tensor:
        """(B, size, size, 2) ``grid_sample`` coordinates (``align_corners=False``) of every
        output pixel in the height×width input."""
        xs, ys = _crop_axes(g.box, self.size).unbind(1)
        xs = torch.where(g.flip[:, None], xs.flip(1), xs)
        if self.degrees or self.shear:
            lin, shift = _inverse_affine(g, height, width)
        else:
            lin, shift = torch.eye(2, device=xs.device, dtype=xs.dtype)[None], xs.new_zeros(1, 2)
        scale = xs.new_tensor([2 / width, 2 / height])  # pixel -> grid_sample, row by row
        lin, shift = lin * scale[:, None], shift * scale + (scale / 2 - 1)
        along_x = torch.addcmul(shift[:, None], lin[:, None, :, 0], xs[:, :, None])  # (B, S, 2)
        along_y = lin[:, None, :, 1] * ys[:, :, None]
        grid = xs.new_empty(xs.shape[0], self.size, self.size, 2)
        for k in range(2):  # one strided add per coordinate: half the time of one 4-D add
            torch.add(along_x[:, None, :, k], along_y[:, :, None, k], out=grid[..., k])
        return grid


def _crop_axes(box: Tensor, size: int) -> Tensor:
    """(B, 2, size) input x and y coordinates of the output columns and rows: the crop boxes
    ``x0, y0, w, h`` (B, 4) resized to size×size as ``F.interpolate(bilinear,
    align_corners=False)`` samples them (half-pixel centres, clamped to the box)."""
    u = torch.arange(size, device=box.device, dtype=box.dtype)
    start, length = box[:, :2, None], box[:, 2:, None]
    pos = ((u + 0.5) * (length / size) - 0.5).clamp_min(0).minimum(length - 1)
    return start + pos


def _inverse_affine(g: Geometry, height: int, width: int) -> tuple[Tensor, Tensor]:
    """(B, 2, 2) and (B, 2): ``p_in = lin · p + shift`` maps rotated-and-sheared pixels back
    to input pixels. It inverts kornia's ``RandomAffine`` map ``p = c + R·S·(p_in − c)``
    (``get_affine_matrix2d``): centre c = ((W−1)/2, (H−1)/2), R = [[cos a, −sin a],
    [sin a, cos a]] (clockwise on screen), S = [[1, −tan s], [0, 1]]."""
    a, s = torch.deg2rad(g.angle), torch.deg2rad(g.shear)
    cos, sin, tan = a.cos(), a.sin(), s.tan()
    lin = torch.stack([cos - tan * sin, sin + tan * cos, -sin, cos], dim=1).view(-1, 2, 2)
    centre = lin.new_tensor([(width - 1) / 2, (height - 1) / 2])
    return lin, centre - lin @ centre


def colour_ops(channels: int, jitter: tuple[float, float, float, float], jitter_p: float,
               gray_p: float) -> list[nn.Module]:
    """Colour jitter (brightness, contrast, saturation, hue) with probability ``jitter_p``, in a
    random order, then 3-channel grayscale with probability ``gray_p``
    (:class:`RandomColorJitter`, kornia's ``RandomGrayscale``, luma weights 0.299/0.587/0.114);
    brightness and contrast only when the images are not RGB."""
    brightness, contrast, saturation, hue = jitter
    if channels != 3:
        saturation, hue = 0.0, 0.0
    ops: list[nn.Module] = [RandomColorJitter(brightness, contrast, saturation, hue, jitter_p)]
    if channels == 3:
        weights = torch.tensor(_LUMA)
        ops.append(
            K.RandomGrayscale(rgb_weights=weights, same_on_batch=False, p=gray_p, keepdim=False)
        )
    return ops


def _blur_kernel(size: int, kernel: int | None) -> int:
    """The given odd kernel, else ≈10% of the view size rounded to odd (224 → 23), capped so
    that reflect padding fits the image."""
    if kernel is None:
        kernel = 2 * round((0.1 * size - 1) / 2) + 1
    if kernel % 2 == 0:
        raise ValueError(f"blur kernel must be odd, got {kernel}")
    return max(3, min(kernel, 2 * size - 1))


def _blur(
    size: int, kernel: int | None, sigma: tuple[float, float], p: float
) -> K.RandomGaussianBlur:
    k = _blur_kernel(size, kernel)
    return K.RandomGaussianBlur(
        (k, k),
        sigma,
        border_type="reflect",
        separable=True,
        same_on_batch=False,
        p=p,
        keepdim=False,
    )


def _solarize(p: float) -> K.RandomSolarize:
    """Solarize at threshold exactly 0.5 (x ≥ 0.5 → 1 − x), as in BYOL."""
    return K.RandomSolarize(thresholds=0.0, additions=0.0, same_on_batch=False, p=p, keepdim=False)


def simclr(
    size: int,
    channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    *,
    strength: float = 0.5,
    blur: bool = False,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = _RATIO,
    flip_p: float = 0.5,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_kernel: int | None = None,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    blur_p: float = 0.5,
    rotate: float = 0.0,
    shear: float = 0.0,
) -> nn.Module:
    """SimCLR view: resized crop, flip, jitter (0.8s, 0.8s, 0.8s, 0.2s) p=0.8, grayscale p=0.2,
    optional Gaussian blur p=0.5 (kernel ≈10% of size, σ ∈ (0.1, 2)).

    CC's ``cc_small`` (s=0.5), ``cc_stl`` (s=1) and ``cc_imagenet`` (s=1, blur);
    ProPos/HaDis ``propos_simclr`` (s=0.5, no blur, with mean/std). ``rotate`` /
    ``shear`` (degrees, default 0 = off) add a random affine before the crop: a toolkit option
    for digit images, not in any of the papers. Affine, crop and flip are one warp."""
    s = strength
    crop = ResizedCrop(crop_scale, crop_ratio)
    ops: list[nn.Module] = [RandomGeometry(size, crop, flip_p, rotate, shear)]
    ops += colour_ops(channels, (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s), jitter_p, gray_p)
    if blur:
        ops.append(_blur(size, blur_kernel, blur_sigma, blur_p))
    return ViewPipeline(size, channels, ops, mean, std, resize=False)


def byol(
    size: int,
    channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    *,
    view: Literal[1, 2] = 1,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = _RATIO,
    flip_p: float = 0.5,
    jitter: _Jitter = (0.4, 0.4, 0.2, 0.1),
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_kernel: int | None = None,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    blur_p: float | None = None,
    solarize_p: float | None = None,
) -> nn.Module:
    """BYOL's asymmetric view (Grill et al. 2020, Table 6): crop, flip, jitter (0.4, 0.4, 0.2,
    0.1) p=0.8, grayscale p=0.2, blur (p=1.0 for view 1, 0.1 for view 2), solarize (p=0.0 for
    view 1, 0.2 for view 2). Not used by CC, HaDis or SPICE; offered for BYOL-style recipes."""
    if view not in (1, 2):
        raise ValueError(f"byol view must be 1 or 2, got {view!r}")
    blur_p = (1.0 if view == 1 else 0.1) if blur_p is None else blur_p
    solarize_p = (0.0 if view == 1 else 0.2) if solarize_p is None else solarize_p
    crop = ResizedCrop(crop_scale, crop_ratio)
    ops: list[nn.Module] = [RandomGeometry(size, crop, flip_p)]
    ops += colour_ops(channels, jitter, jitter_p, gray_p)
    ops += [_blur(size, blur_kernel, blur_sigma, blur_p), _solarize(solarize_p)]
    return ViewPipeline(size, channels, ops, mean, std, resize=False)


def moco_v2(
    size: int,
    channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    *,
    crop_scale: tuple[float, float] = (0.2, 1.0),
    crop_ratio: tuple[float, float] = _RATIO,
    jitter: _Jitter = (0.4, 0.4, 0.4, 0.1),
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_kernel: int | None = 13,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    blur_p: float = 0.5,
    flip_p: float = 0.5,
) -> nn.Module:
    """MoCo-v2 view (SPICE stage 1): crop scale (0.2, 1), jitter
    (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, blur σ ∈ (0.1, 2) with a 13-tap kernel p=0.5,
    flip p=0.5; SPICE normalises with ImageNet mean/std. The flip is warped with the crop: it
    commutes with the jitter (per image) and the blur (symmetric kernel, reflect border), so
    the views have the distribution of SPICE's order."""
    ops: list[nn.Module] = [RandomGeometry(size, ResizedCrop(crop_scale, crop_ratio), flip_p)]
    ops += colour_ops(channels, jitter, jitter_p, gray_p)
    ops += [_blur(size, blur_kernel, blur_sigma, blur_p)]
    return ViewPipeline(size, channels, ops, mean, std, resize=False)


def weak(
    size: int,
    channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    *,
    padding: int = 4,
    flip_p: float = 0.5,
) -> nn.Module:
    """Weak view: random size×size crop after zero padding by 4, horizontal flip p=0.5.

    SPICE ``spice_weak`` and FixMatch ``fixmatch_weak`` (the order of the
    two independent ops does not change the distribution). Inputs not at size are resized."""
    ops = [RandomGeometry(size, PaddedCrop(padding), flip_p)]
    return ViewPipeline(size, channels, ops, mean, std, resize=True)


def _gray(x: Tensor) -> Tensor:
    """PIL 'L' conversion for RGB (B×1×H×W); the channel mean otherwise."""
    if x.shape[1] == 3:
        weights = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def _per_sample(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


def _autocontrast(x: Tensor, v: Tensor) -> Tensor:
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), x)


def _equalize(x: Tensor, v: Tensor) -> Tensor:
    return KE.equalize(x)


def _solarize_at(x: Tensor, v: Tensor) -> Tensor:
    return torch.where(torch.round(x * 255) >= _per_sample(v), 1.0 - x, x)


def _posterize(x: Tensor, v: Tensor) -> Tensor:
    shift = _per_sample(8 - v.floor().long())
    levels = torch.round(x * 255).long()
    return ((levels >> shift) << shift).to(x.dtype) / 255


def _color(x: Tensor, v: Tensor) -> Tensor:
    g = _gray(x)
    return (g + _per_sample(v) * (x - g)).clamp(0.0, 1.0)


def _contrast(x: Tensor, v: Tensor) -> Tensor:
    m = torch.round(_gray(x).mean(dim=(-2, -1), keepdim=True) * 255) / 255
    return (m + _per_sample(v) * (x - m)).clamp(0.0, 1.0)


def _brightness(x: Tensor, v: Tensor) -> Tensor:
    return (x * _per_sample(v)).clamp(0.0, 1.0)


def _sharpness(x: Tensor, v: Tensor) -> Tensor:
    return KE.sharpness(x, v)


def _warp(x: Tensor, forward: Tensor) -> Tensor:
    """Nearest-neighbour warp with black fill; ``forward`` maps input to output pixels."""
    h, w = x.shape[-2:]
    return warp_affine(x, forward, (h, w), mode="nearest", padding_mode="zeros", align_corners=True)


def _eye(v: Tensor) -> Tensor:
    return torch.eye(2, 3, device=v.device, dtype=v.dtype).repeat(v.shape[0], 1, 1)


def _rotate(x: Tensor, v: Tensor) -> Tensor:
    h, w = x.shape[-2:]
    center = v.new_tensor([(w - 1) / 2, (h - 1) / 2]).expand(v.shape[0], 2)
    return _warp(x, get_rotation_matrix2d(center, v, torch.ones_like(center)))


def _shear_x(x: Tensor, v: Tensor) -> Tensor:
    m = _eye(v)
    m[:, 0, 1] = -v
    return _warp(x, m)


def _shear_y(x: Tensor, v: Tensor) -> Tensor:
    m = _eye(v)
    m[:, 1, 0] = -v
    return _warp(x, m)


def _translate_x(x: Tensor, v: Tensor) -> Tensor:
    m = _eye(v)
    m[:, 0, 2] = -v * x.shape[-1]
    return _warp(x, m)


def _translate_y(x: Tensor, v: Tensor) -> Tensor:
    m = _eye(v)
    m[:, 1, 2] = -v * x.shape[-2]
    return _warp(x, m)


_Op = Callable[[Tensor, Tensor], Tensor]


class RandomOps(nn.Module):
    """SCAN/FixMatch RandAugment: ``n_ops`` slots; in each slot every
    image draws one of 14 PIL-style ops uniformly with replacement and its own magnitude
    ``v ~ U(lo, hi)``. Geometric ops use top-left origin for shear/translate, the centre for
    rotate, nearest sampling and black fill; Posterize/Solarize quantise to 1/255.

    SCAN's extra sign flip of the geometric magnitudes is implied: their ranges are symmetric."""

    def __init__(
        self,
        n_ops: int,
        rotate: float = 30.0,
        shear: float = 0.1,
        translate: float = 0.1,
        enhance: tuple[float, float] = (0.05, 0.95),
    ) -> None:
        super().__init__()
        self.n_ops = n_ops
        self.table: list[tuple[_Op | None, float, float]] = [
            (None, 0.0, 0.0),
            (_autocontrast, 0.0, 0.0),
            (_equalize, 0.0, 0.0),
            (_rotate, -rotate, rotate),
            (_solarize_at, 0.0, 256.0),
            (_color, *enhance),
            (_contrast, *enhance),
            (_brightness, *enhance),
            (_sharpness, *enhance),
            (_shear_x, -shear, shear),
            (_shear_y, -shear, shear),
            (_translate_x, -translate, translate),
            (_translate_y, -translate, translate),
            (_posterize, 4.0, 8.0),
        ]

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        for _ in range(self.n_ops):
            op_ids = torch.randint(len(self.table), (b,), device=x.device)
            u = torch.rand(b, device=x.device, dtype=x.dtype)
            out = x.clone()
            for k, (op, lo, hi) in enumerate(self.table):
                idx = torch.nonzero(op_ids == k).squeeze(1)
                if op is None or idx.numel() == 0:
                    continue
                out[idx] = op(x[idx], lo + (hi - lo) * u[idx])
            x = out
        return x


class Cutout(nn.Module):
    """One square hole per image, applied with probability ``p``.

    ``"scan"``: side ``l ~ randint[1, max_size]`` px, centre uniform over pixels, rows/cols
    ``[c − ⌊l/2⌋, c + ⌊l/2⌋)`` clipped. ``"fixmatch"``: side ``s = U(0, max_size)·W``, centre
    uniform in [0, W)×[0, H), top-left ``⌊max(0, c − s/2)⌋``, bottom-right
    ``⌊min(W, top-left + s)⌋`` inclusive (PIL rectangle). Holes take the colour ``fill``."""

    def __init__(
        self, mode: Literal["scan", "fixmatch"], max_size: float, fill: Sequence[float], p: float
    ) -> None:
        super().__init__()
        self.mode = mode
        self.max_size = max_size
        self.fill = tuple(float(f) for f in fill)
        self.p = p

    def _span(self, centre: Tensor, side: Tensor, n: int, limit: int) -> Tensor:
        pos = torch.arange(n, device=centre.device).view(1, -1)
        if self.mode == "scan":
            half = (side // 2).view(-1, 1)
            c = centre.view(-1, 1)
            return (pos >= c - half) & (pos < c + half)
        start = (centre - side / 2).clamp_min(0).floor()
        stop = torch.minimum(start + side, torch.full_like(start, float(limit))).floor()
        return (pos >= start.view(-1, 1)) & (pos <= stop.view(-1, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        dev = x.device
        if self.mode == "scan":
            side = torch.randint(1, int(self.max_size) + 1, (b,), device=dev)
            cy = torch.randint(0, h, (b,), device=dev)
            cx = torch.randint(0, w, (b,), device=dev)
        else:
            side = torch.rand(b, device=dev) * self.max_size * w
            cy = torch.rand(b, device=dev) * h
            cx = torch.rand(b, device=dev) * w
        rows = self._span(cy, side, h, h)
        cols = self._span(cx, side, w, w)
        hole = rows[:, :, None] & cols[:, None, :]
        hole &= (torch.rand(b, device=dev) < self.p).view(-1, 1, 1)
        fill = torch.tensor(self.fill, device=dev, dtype=x.dtype).view(1, -1, 1, 1)
        return torch.where(hole[:, None], fill, x)


def strong(
    size: int,
    channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    *,
    variant: Literal["scan", "fixmatch"] = "scan",
    n_ops: int | None = None,
    rotate: float = 30.0,
    shear: float | None = None,
    translate: float | None = None,
    cutout: float | None = None,
    cutout_p: float = 1.0,
    flip_p: float = 0.5,
    padding: int = 4,
) -> nn.Module:
    """Strong RandAugment + Cutout view.

    ``"scan"`` (SPICE stage 2, ``scan_strong``): flip, 4 random ops (shear/translate ±0.1),
    Cutout with side ≤ ``cutout`` px (16 for size ≤ 32, else 32) filled with the mean colour
    (= 0 after normalisation; 0.5 grey without mean/std).
    ``"fixmatch"`` (SPICE stage 3, ``fixmatch_strong``): 3 random ops (±0.3), Cutout with side
    ≤ ``cutout`` × width (0.5) filled with RGB (125, 123, 114), then the weak view.
    Inputs not at size are resized first."""
    if variant not in ("scan", "fixmatch"):
        raise ValueError(f"strong variant must be 'scan' or 'fixmatch', got {variant!r}")
    scan = variant == "scan"
    geometric = 0.1 if scan else 0.3
    ops = RandomOps(
        n_ops if n_ops is not None else (4 if scan else 3),
        rotate,
        geometric if shear is None else shear,
        geometric if translate is None else translate,
    )
    if scan:
        side = cutout if cutout is not None else (16 if size <= 32 else 32)
        hole = Cutout("scan", side, mean or (0.5,) * channels, cutout_p)
        flip = RandomGeometry(size, PaddedCrop(0), flip_p)
        return ViewPipeline(size, channels, [flip, ops, hole], mean, std, resize=True)
    grey = _FIXMATCH_FILL if channels == 3 else (sum(_FIXMATCH_FILL) / 3,) * channels
    hole = Cutout("fixmatch", 0.5 if cutout is None else cutout, grey, cutout_p)
    tail = RandomGeometry(size, PaddedCrop(padding), flip_p)
    return ViewPipeline(size, channels, [ops, hole, tail], mean, std, resize=True)


def identity(
    size: int,
    channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> nn.Module:
    """No augmentation: resize to size×size and normalise (SPICE's ``test`` transform); the same
    module as :func:`eval_transform`, registered as a training-view pipeline."""
    return eval_transform(size, channels, mean, std)


def eval_transform(
    size: int,
    channels: int = 3,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> nn.Module:
    """Evaluation / E-step transform: bilinear antialiased resize to size×size (aspect ratio not
    kept, no centre crop) + normalisation (CC's and ProPos's evaluation transform)."""
    return ViewPipeline(size, channels, [], mean, std, resize=True)
