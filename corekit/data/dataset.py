"""In-memory image data set: one uint8 tensor, optional labels, per-channel statistics."""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import torch


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std (in [0,1] units) of a uint8 N×C×H×W tensor.

    Uses a 256-bin histogram per channel, so memory stays small even for large sets.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("channel_stats expects a uint8 tensor of shape N×C×H×W")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means: list[float] = []
    stds: list[float] = []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1).cpu(), minlength=256).double()
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)


def _check_images(instance: ImageSet, attribute: attrs.Attribute, value: torch.Tensor) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.ndim != 4:
        raise ValueError("ImageSet.images must be a uint8 tensor of shape N×C×H×W")


@attrs.define
class ImageSet:
    """A whole image data set held as one uint8 tensor (N×C×H×W).

    Items are keyed by their stable index 0..N-1. ``labels`` (int64, N) are ground truth
    for evaluation only; training code must not read them. ``mean``/``std`` are per-channel
    statistics in [0,1] units, used for normalisation.
    """

    name: str
    images: torch.Tensor = attrs.field(validator=_check_images)
    labels: torch.Tensor | None
    num_classes: int | None
    mean: tuple[float, ...] = attrs.field(converter=tuple)
    std: tuple[float, ...] = attrs.field(converter=tuple)
    skipped: int = 0
    names: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(
        tuple))
    classes: tuple[str, ...] | None = attrs.field(default=None, kw_only=True,
                                                  converter=attrs.converters.optional(tuple))
    """The class names, label ``i`` named ``classes[i]`` (an image folder's class folders);
    None where the set names no classes."""

    def __attrs_post_init__(self) -> None:
        """Check that labels and statistics agree with the images."""
        if self.labels is not None and self.labels.shape != (len(self),):
            raise ValueError(
                f"ImageSet.labels has shape {tuple(self.labels.shape)}, expected ({len(self)},)"
            )
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"ImageSet.mean/std need {self.channels} values, got {len(self.mean)}/"
                f"{len(self.std)}"
            )

    def __len__(self) -> int:
        """Number of images."""
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        """Number of colour channels (1 or 3)."""
        return int(self.images.shape[1])

    @property
    def size(self) -> int | tuple[int, int]:
        """Image side length H for square images, else ``(H, W)``."""
        height, width = int(self.images.shape[2]), int(self.images.shape[3])
        return height if height == width else (height, width)

    def to(self, device: torch.device | str) -> ImageSet:
        """Copy of this set with images (and labels) on ``device``."""
        labels = None if self.labels is None else self.labels.to(device)
        return attrs.evolve(self, images=self.images.to(device), labels=labels)

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Images at ``indices`` as float32 in [0,1], on the images' device."""
        picked = self.images[indices.to(device=self.images.device)]
        return picked.to(torch.float32).div_(255.0)

    def batches(self, order: torch.Tensor,
                batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(indices, float batch) for consecutive chunks of ``order``."""
        order = order.to(self.images.device)
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            yield indices, self.batch(indices)

    def subset(self, n: int, seed: int) -> ImageSet:
        """Random subset of ``n`` images (original order kept), re-indexed 0..n-1."""
        if n <= 0:
            raise ValueError(f"subset size must be positive, got {n}")
        if n >= len(self):
            return self
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(self), generator=generator)[:n].sort().values
        labels = None if self.labels is None else self.labels[chosen.to(self.labels.device)]
        names = None if self.names is None else [self.names[i] for i in chosen.tolist()]
        return attrs.evolve(self, images=self.images[chosen.to(self.images.device)], labels=labels,
                            names=names)
