"""Data sets: name parsing and loading into an in-memory :class:`ImageSet`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from corekit.data.dataset import ImageSet
from corekit.data.errors import DataError
from corekit.data.sources import (
    load_cifar10,
    load_cifar20,
    load_digits_set,
    load_imagefolder,
    load_mnist,
    load_stl10,
)
from corekit.data.stream import StreamingImageSet
from corekit.errors import did_you_mean

_LOADERS: dict[str, Callable[[Path | None], ImageSet]] = {
    "digits": lambda root: load_digits_set(),
    "mnist": lambda root: load_mnist(root, "all"),
    "mnist-train": lambda root: load_mnist(root, "train"),
    "mnist-test": lambda root: load_mnist(root, "test"),
    "cifar10": load_cifar10,
    "cifar20": load_cifar20,
    "stl10": load_stl10,
    "imagefolder": lambda root: load_imagefolder(root),
}
DATASET_NAMES: tuple[str, ...] = tuple(_LOADERS)
_NO_ARGUMENT = frozenset({"digits"})
_NEEDS_ARGUMENT = frozenset({"imagefolder"})

__all__ = ["DATASET_NAMES", "DataError", "ImageSet", "StreamingImageSet", "load_dataset"]


def load_dataset(spec: str, root: Path | None = None) -> ImageSet | StreamingImageSet:
    """Load a data set from a spec ``NAME`` or ``NAME:PATH``.

    Names: digits, mnist, mnist-train, mnist-test, cifar10, cifar20, stl10, imagefolder.
    ``PATH`` (or ``root`` when no path is given) is the folder holding the files; it is
    required for ``imagefolder`` and not accepted for ``digits``.
    """
    name, sep, argument = spec.strip().partition(":")
    name = name.lower()
    if name not in _LOADERS:
        raise DataError(_unknown_message(name))
    if sep and name in _NO_ARGUMENT:
        raise DataError(f"dataset {name!r} takes no path; use {name!r}")
    folder = Path(argument).expanduser() if argument else root
    if name in _NEEDS_ARGUMENT and folder is None:
        raise DataError(f"dataset {name!r} needs a folder: use '{name}:PATH'")
    return _LOADERS[name](folder)


def _unknown_message(name: str) -> str:
    return (f"unknown dataset {name!r}; {did_you_mean(name, DATASET_NAMES)} "
            f"(valid: {', '.join(DATASET_NAMES)}; your own images: imagefolder:PATH)")
