"""IDFD's single-view augmentation, ``idfd_aug``, batched on the device with the core's view
ops."""

from __future__ import annotations

from torch import nn

from corekit import RandomGeometry, ResizedCrop, ViewPipeline, colour_ops

_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def idfd_ops(size: int, channels: int, crop_scale: tuple[float, float],
             crop_ratio: tuple[float, float], jitter: tuple[float, float, float, float],
             gray_p: float, hflip_p: float) -> list[nn.Module]:
    """The ops of one IDFD view, in order: RandomResizedCrop(scale, ratio) to size×size and an
    optional horizontal flip (one warp, ``RandomGeometry``), ColorJitter(brightness, contrast,
    saturation, hue) always applied, RandomGrayscale(gray_p) (the core's ``colour_ops``: the
    draws of kornia's torchvision-compatible ``ColorJitter``, not the legacy ``ColorJiggle``).

    Saturation, hue and grayscale need RGB; for other channel counts they are skipped (for
    1-channel Stripe-MNIST the view is crop + brightness/contrast). Random
    parameters are drawn per sample.
    """
    crop = ResizedCrop(tuple(crop_scale), tuple(crop_ratio))
    return [RandomGeometry(size, crop, hflip_p), *colour_ops(channels, jitter, 1.0, gray_p)]


def idfd_aug(size: int, channels: int = 3, mean: tuple[float, ...] | None = None,
             std: tuple[float, ...] | None = None, *,
             crop_scale: tuple[float, float] = (0.2, 1.0),
             crop_ratio: tuple[float, float] = _RATIO, brightness: float = 0.4,
             contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0,
             gray_p: float = 0.2, hflip_p: float = 0.0) -> nn.Module:
    """IDFD's view (from the IDFD code for 32 px CIFAR): RandomResizedCrop
    scale (0.2, 1), ratio (3/4, 4/3); ColorJitter(0.4, 0.4, 0.4, 0) with p = 1;
    RandomGrayscale(0.2); normalise. No flip by default (``hflip_p`` adds one: the IDFD paper's
    list may include a flip, unverified). cIDFD gives no augmentations; this toolkit uses this
    one for both stages."""
    ops = idfd_ops(size, channels, crop_scale, crop_ratio,
                   (brightness, contrast, saturation, hue), gray_p, hflip_p)
    return ViewPipeline(size, channels, ops, mean, std, resize=False)
