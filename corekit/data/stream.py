"""Folders too large for memory: decoded per batch by DataLoader workers, never augmented there.

Only decoding (PIL → uint8 at a fixed size) happens in the workers; augmentation stays batched on
the device, exactly as for in-memory sets. Items keep their stable index into ``files``.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from corekit.data.errors import DataError

DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                 Image.DecompressionBombError)
"""What opening or decoding a bad file raises (PIL raises OSError for a truncated file)."""
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WHITE = (255, 255, 255, 255)


def decode_image(file: Path, mode: str, target: tuple[int, int]) -> np.ndarray:
    """One image file as a uint8 H×W (mode "L") or H×W×3 array at size ``target`` (W, H).

    The pixels are decoded in full (so a truncated file raises here, not later) and turned
    upright by their EXIF orientation (a phone photo stored sideways); see :func:`to_8bit`
    for how 16-bit, palette, alpha and CMYK images are brought to L or RGB.
    """
    with Image.open(file) as image:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        converted = to_8bit(image)
    if converted.mode != mode:
        converted = converted.convert(mode)
    if converted.size != target:
        converted = converted.resize(target, Image.Resampling.BILINEAR)
    return np.array(converted, dtype=np.uint8)  # a writable copy, for torch.from_numpy


TURNED = frozenset({5, 6, 7, 8})
"""EXIF orientations whose upright image is the stored one turned by 90 degrees."""


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(W, H) of ``image`` (opened, not yet decoded) once its EXIF orientation is applied."""
    width, height = image.size
    turned = image.getexif().get(ExifTags.Base.Orientation) in TURNED
    return (height, width) if turned else (width, height)


def to_8bit(image: Image.Image) -> Image.Image:
    """``image`` as an 8-bit "L" or "RGB" image, scaled rather than clipped.

    16-bit grayscale ("I;16", "I;16B", "I;16L", and "I" with values in 0..65535, e.g. a
    16-bit PGM) is divided by 257 so 0..65535 maps onto 0..255; "I" beyond 16 bits is
    stretched from its own min..max; "F" is read as 0..1, 0..255 or 0..65535 when it fits one
    of those ranges, else stretched. Transparency (RGBA, LA, PA, palette or plain images with
    a transparent colour) is composited onto white, so transparent pixels become white, not
    whatever colour they happen to hold. Palette images take their palette's colours; CMYK
    and other colour modes go through PIL's conversion to RGB, "1" to L. (PIL itself reads
    16-bit RGB PNGs as 8-bit RGB, keeping the high byte.)
    """
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return Image.fromarray(_scaled_gray(np.asarray(image), mode))
    gray = mode in ("1", "L", "LA", "La")
    if mode in ("L", "RGB", "P") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        flat = Image.alpha_composite(Image.new("RGBA", image.size, _WHITE), image.convert("RGBA"))
        return flat.convert("L" if gray else "RGB")
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("L" if gray else "RGB")


def _scaled_gray(values: np.ndarray, mode: str) -> np.ndarray:
    """A 16-bit, 32-bit integer or float grayscale array mapped to uint8 0..255."""
    pixels = values.astype(np.float32)
    low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    if mode in SIXTEEN_BIT_MODES or (mode == "I" and low >= 0 and high <= 65535):
        pixels *= 255.0 / 65535.0
    elif mode == "F" and low >= 0 and high <= 1:
        pixels *= 255.0
    elif mode == "F" and low >= 0 and high <= 65535:
        pixels *= 1.0 if high <= 255 else 255.0 / 65535.0
    else:
        pixels = (pixels - low) * (255.0 / (high - low) if high > low else 0.0)
    return np.rint(pixels).clip(0, 255).astype(np.uint8)


def skip_reason(file: Path, err: BaseException) -> str:
    """A few words on why ``file`` could not be read: "empty file", "truncated", ..."""
    try:
        if file.stat().st_size == 0:
            return "empty file"
    except OSError as stat_err:
        return f"cannot be read: {stat_err.strerror or stat_err}"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, Image.DecompressionBombError):
        return "too large to decode safely"
    if isinstance(err, UnidentifiedImageError):
        return "not an image"
    text = str(err)
    if isinstance(err, EOFError) or "truncated" in text.lower():
        return "truncated"
    return f"corrupt: {text[:80]}" if text else "corrupt"


class _Probe(Dataset):
    """Decodes ``files[i]`` once: (i, skip reason or None, per-channel 256-bin histogram)."""

    def __init__(self, files: list[Path], mode: str, target: tuple[int, int],
                 histogram: bool) -> None:
        self.files, self.mode, self.target, self.histogram = files, mode, target, histogram

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, str | None, np.ndarray | None]:
        file = self.files[index]
        try:
            array = decode_image(file, self.mode, self.target)
        except DECODE_ERRORS as err:
            return index, skip_reason(file, err), None
        if not self.histogram:
            return index, None, None
        planes = array.reshape(-1, 1) if array.ndim == 2 else array.reshape(-1, array.shape[2])
        counts = [np.bincount(planes[:, c], minlength=256) for c in range(planes.shape[1])]
        return index, None, np.stack(counts)


def _as_list(items: list) -> list:
    return items


def probe_files(files: list[Path], mode: str, target: tuple[int, int], workers: int = 0,
                histogram: bool = False) -> tuple[list[str | None], np.ndarray | None]:
    """Decode every file once, as a streaming set will: why each one failed (None: fine).

    A streaming set decodes lazily, so a file that opens but whose pixel data is truncated
    would otherwise only fail in a DataLoader worker mid-epoch. Probing here costs one decode
    per file at load time (spread over ``workers`` processes, no images kept) and keeps
    ``len``, labels and names fixed, which evaluation and prediction rely on: they match
    every index's output to its label and name. With ``histogram`` also returns the summed
    per-channel 256-bin histogram of the good images (C×256), for exact statistics.
    """
    probe = _Probe(files, mode, target, histogram)
    loader = DataLoader(probe, batch_size=64, num_workers=workers, collate_fn=_as_list)
    reasons: list[str | None] = [None] * len(files)
    total: np.ndarray | None = None
    for chunk in loader:
        for index, reason, counts in chunk:
            reasons[index] = reason
            if counts is not None:
                total = counts if total is None else total + counts
    return reasons, total


def histogram_stats(counts: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0,1] units from C×256 pixel counts (as ``channel_stats``)."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means: list[float] = []
    stds: list[float] = []
    for row in torch.from_numpy(counts).double():
        mean = (row * values).sum() / row.sum()
        means.append(float(mean))
        stds.append(float(((row * (values - mean) ** 2).sum() / row.sum()).sqrt()))
    return tuple(means), tuple(stds)


class DecodedFiles(Dataset):
    """``files[i]`` decoded to a uint8 C×H×W tensor of mode ``mode`` ("L" or "RGB")."""

    def __init__(self, files: list[Path], mode: str, target: tuple[int, int]) -> None:
        self.files, self.mode, self.target = files, mode, target

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        file = self.files[index]
        try:
            array = decode_image(file, self.mode, self.target)
        except DECODE_ERRORS as err:
            raise DataError(f"image {file} became unreadable during training: {err}; it decoded "
                            f"when the folder was loaded, so it changed since") from err
        array = array[None] if self.mode == "L" else array.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(array))


@attrs.define
class StreamingImageSet:
    """The ``ImageSet`` interface over image files decoded on demand."""

    name: str
    files: list[Path]
    labels: torch.Tensor | None
    num_classes: int | None
    mean: tuple[float, ...] = attrs.field(converter=tuple)
    std: tuple[float, ...] = attrs.field(converter=tuple)
    mode: str = "RGB"
    target: tuple[int, int] = (32, 32)
    skipped: int = 0
    names: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(
        tuple))
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    workers: int = attrs.field(factory=lambda: min(4, os.cpu_count() or 1))
    classes: tuple[str, ...] | None = attrs.field(default=None, kw_only=True,
                                                  converter=attrs.converters.optional(tuple))
    """The class names, label ``i`` named ``classes[i]`` (an image folder's class folders);
    None where the set names no classes."""

    def __len__(self) -> int:
        return len(self.files)

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def size(self) -> int | tuple[int, int]:
        width, height = self.target
        return height if height == width else (height, width)

    def to(self, device: torch.device | str) -> StreamingImageSet:
        labels = None if self.labels is None else self.labels.to(device)
        return attrs.evolve(self, labels=labels, device=torch.device(device))

    def _decoded(self) -> DecodedFiles:
        return DecodedFiles(self.files, self.mode, self.target)

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Images at ``indices`` decoded in this process, float32 in [0,1] on the device."""
        decoded = self._decoded()
        stacked = torch.stack([decoded[int(i)] for i in indices.cpu()])
        return stacked.to(self.device).float().div_(255.0)

    def batches(self, order: torch.Tensor,
                batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(indices, float batch on the device) in ``order``, decoded by worker processes."""
        chunks = [order[i:i + batch_size].cpu().tolist() for i in range(0, len(order), batch_size)]
        loader = DataLoader(self._decoded(), batch_sampler=chunks, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda")
        for chunk, images in zip(chunks, loader, strict=True):
            indices = torch.tensor(chunk, device=self.device)
            yield indices, images.to(self.device, non_blocking=True).float().div_(255.0)

    def subset(self, n: int, seed: int) -> StreamingImageSet:
        if n >= len(self):
            return self
        chosen = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        chosen = chosen.sort().values
        labels = None if self.labels is None else self.labels[chosen.to(self.labels.device)]
        names = None if self.names is None else [self.names[i] for i in chosen.tolist()]
        return attrs.evolve(self, files=[self.files[i] for i in chosen.tolist()], labels=labels,
                            names=names)
