"""Folders too large for memory: decoded per batch by DataLoader workers, never augmented there.

Only decoding (PIL → uint8 at a fixed size) happens in the workers; augmentation stays batched on
the device, exactly as for in-memory sets. Items keep their stable index into ``files``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from corekit.data.errors import DataError


def decode_image(file: Path, mode: str, target: tuple[int, int]) -> np.ndarray:
    """One image file as a uint8 H×W (mode "L") or H×W×3 array at size ``target`` (W, H)."""
    with Image.open(file) as image:
        converted = image.convert(mode)
    if converted.size != target:
        converted = converted.resize(target, Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.uint8)


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
        except (OSError, ValueError, SyntaxError) as err:
            raise DataError(f"image {file} became unreadable during training: {err}") from err
        array = array[None] if self.mode == "L" else array.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(array))


@attrs.define
class StreamingImageSet:
    """The ``ImageSet`` interface over image files decoded on demand (DESIGN.md, Data)."""

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
