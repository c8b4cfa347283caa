"""Stripe-MNIST (target) and Stripes (background), cIDFD's synthetic pair (§4.1, arXiv 2408.04891).

The paper says only "MNIST digits plus randomly generated stripe patterns" and that the
background set holds stripe-only images from the same generator family. The generator below is
this toolkit's choice:

- 4 stripe families: horizontal, vertical, 45° ("/", lines ``r + c = const``) and 135° ("\\",
  lines ``r − c = const``), with ``r`` the row (downwards) and ``c`` the column;
- period ``p`` ∈ {4, …, 8} px, line width ``w`` ∈ {1, 2} px, phase ``φ`` ∈ {0, …, p − 1}, all
  uniform; pixel on ⇔ ``(u + φ) mod p < w`` with ``u = r, c, r + c, r − c`` by family (for
  the diagonals the period is measured along a row);
- stripes are drawn at intensity 255 and composed with the digit as the pixel-wise maximum.

Both sets are deterministic: the target's stripes come from stream 0 and the background's from
stream 1 of ``numpy.random.SeedSequence(SEED)`` (independent streams, so the background is not
a copy of the target's stripe draws). Stripe-MNIST uses the 60,000 MNIST
*train* digits (the paper's count, §4.1), read through the core's ``mnist-train`` loader.
"""

from __future__ import annotations

import functools
from pathlib import Path

import attrs
import numpy as np
import torch

from corekit import DataError, ImageSet, load_dataset

SEED = 240804891
"""Base seed of both sets (the cIDFD arXiv number, 2408.04891)."""
TARGET_STREAM = 0
BACKGROUND_STREAM = 1
N_BACKGROUND = 10_000
"""Size of the Stripes set (cIDFD Table 1)."""
FAMILIES = ("horizontal", "vertical", "diagonal_45", "diagonal_135")
PERIODS = (4, 8)
WIDTHS = (1, 2)
STRIPE_VALUE = 255

STATS_MEAN = (0.3614,)
STATS_STD = (0.4659,)
"""Normalisation statistics of Stripe-MNIST (60,000 images, ``SEED``), given to **both** sets:
the frozen background encoder must see target images scaled as its stage-1 inputs were
(the background and target sets share output size and normalisation)."""


@attrs.frozen
class StripeParams:
    """One stripe pattern per image: ``family`` (index into ``FAMILIES``), ``period``,
    ``width`` and ``phase`` in pixels, each an int64 array (n,)."""

    family: np.ndarray
    period: np.ndarray
    width: np.ndarray
    phase: np.ndarray

    def __len__(self) -> int:
        return len(self.family)


def stripe_rng(stream: int, seed: int = SEED) -> np.random.Generator:
    """The generator of one set: stream ``stream`` of ``SeedSequence(seed)``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def draw_stripes(n: int, rng: np.random.Generator) -> StripeParams:
    """``n`` patterns: family, period, width uniform, then phase uniform below the period."""
    family = rng.integers(0, len(FAMILIES), size=n)
    period = rng.integers(PERIODS[0], PERIODS[1] + 1, size=n)
    width = rng.integers(WIDTHS[0], WIDTHS[1] + 1, size=n)
    phase = np.floor(rng.random(n) * period).astype(np.int64)
    return StripeParams(family, period, width, phase)


def render_stripes(params: StripeParams, size: int = 28) -> np.ndarray:
    """uint8 (n, size, size) images: 255 on the stripes, 0 elsewhere (module docstring)."""
    r = np.arange(size)[:, None]
    c = np.arange(size)[None, :]
    # u per family, shifted to be non-negative (r − c ≥ −(size − 1)); a shift of the whole
    # coordinate is a phase change, so it does not change the pattern distribution
    coords = np.stack([np.broadcast_to(r, (size, size)), np.broadcast_to(c, (size, size)),
                       r + c, r - c + (size - 1)]).astype(np.int64)
    out = np.empty((len(params), size, size), dtype=np.uint8)
    for start in range(0, len(params), 8192):
        part = slice(start, start + 8192)
        u = coords[params.family[part]]
        on = (u + params.phase[part, None, None]) % params.period[part, None, None] \
            < params.width[part, None, None]
        out[part] = np.where(on, STRIPE_VALUE, 0).astype(np.uint8)
    return out


def stripe_mnist_images(digits: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, StripeParams]:
    """``max(digit, stripes)`` for uint8 digits (n, H, W), stripes from the target stream."""
    params = draw_stripes(len(digits), stripe_rng(TARGET_STREAM, seed))
    return np.maximum(digits, render_stripes(params, digits.shape[-1])), params


def stripes_images(n: int = N_BACKGROUND, size: int = 28,
                   seed: int = SEED) -> tuple[np.ndarray, StripeParams]:
    """``n`` stripe-only images (n, size, size) from the background stream."""
    params = draw_stripes(n, stripe_rng(BACKGROUND_STREAM, seed))
    return render_stripes(params, size), params


@attrs.define
class StripeSet(ImageSet):
    """An :class:`corekit.ImageSet` that also holds the stripe family (0-3, ``FAMILIES``) of
    every image, for diagnostics only (plots, the nuisance clustering); ``subset`` keeps it
    aligned with the images."""

    families: torch.Tensor | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.families is not None and self.families.shape != (len(self),):
            raise ValueError(f"StripeSet.families has shape {tuple(self.families.shape)}, "
                             f"expected ({len(self)},)")

    def subset(self, n: int, seed: int) -> StripeSet:
        """The images :meth:`ImageSet.subset` picks (a seeded ``randperm``, original order
        kept), with ``labels`` and ``families`` sliced alike."""
        if n <= 0:
            raise ValueError(f"subset size must be positive, got {n}")
        if n >= len(self):
            return self
        chosen = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        chosen = chosen.sort().values

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[chosen.to(t.device)]

        return attrs.evolve(self, images=pick(self.images), labels=pick(self.labels),
                            families=pick(self.families))


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)


@functools.lru_cache(maxsize=2)
def _stripe_mnist(folder: str | None) -> StripeSet:
    mnist = load_dataset("mnist-train", root=None if folder is None else Path(folder))
    images, params = stripe_mnist_images(mnist.images[:, 0].numpy())
    return StripeSet("stripe-mnist", _tensor(images), mnist.labels.clone(), 10, STATS_MEAN,
                     STATS_STD, families=torch.from_numpy(params.family.copy()))


def load_stripe_mnist(folder: Path | None = None) -> StripeSet:
    """Dataset ``stripe-mnist[:MNIST_DIR]``: the 60,000 MNIST train digits with one stripe
    pattern each; labels are the digits, ``families`` the stripe family. ``MNIST_DIR`` holds
    the four IDX files; without it, the core's default MNIST folder is used."""
    return _stripe_mnist(None if folder is None else str(Path(folder).resolve()))


@functools.lru_cache(maxsize=1)
def _stripes() -> StripeSet:
    images, params = stripes_images()
    family = torch.from_numpy(params.family.copy())
    return StripeSet("stripes", _tensor(images), family.clone(), len(FAMILIES), STATS_MEAN,
                     STATS_STD, families=family)


def load_stripes(folder: Path | None = None) -> StripeSet:
    """Dataset ``stripes``: 10,000 stripe-only 28×28 images from the background stream. The
    labels are the stripe families (4 classes), a nuisance label for diagnostics; no
    training code reads them. It takes no folder."""
    if folder is not None:
        raise DataError("dataset 'stripes' is generated and takes no path; use 'stripes'")
    return _stripes()
