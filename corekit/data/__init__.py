"""Data sets: name parsing and loading into an in-memory :class:`ImageSet`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

Loader = Callable[[Path | None], "ImageSet | StreamingImageSet"]


def _digits(root: Path | None) -> ImageSet:
    """scikit-learn's 8×8 digits (1,797 images, 10 classes), bundled: no download, no path."""
    if root is not None:
        raise DataError("dataset 'digits' takes no path; use 'digits'")
    return load_digits_set()


def _mnist(root: Path | None) -> ImageSet:
    """MNIST train+test (70,000 28×28 grey digits, 10 classes): the IDX files in PATH, else
    downloaded."""
    return load_mnist(root, "all")


def _mnist_train(root: Path | None) -> ImageSet:
    """The 60,000 MNIST train digits (as ``mnist``)."""
    return load_mnist(root, "train")


def _mnist_test(root: Path | None) -> ImageSet:
    """The 10,000 MNIST test digits (as ``mnist``)."""
    return load_mnist(root, "test")


def _imagefolder(root: Path | None) -> ImageSet | StreamingImageSet:
    """Your own images, ``imagefolder:PATH``: one sub-folder per class, or a flat folder."""
    if root is None:
        raise DataError("dataset 'imagefolder' needs a folder: use 'imagefolder:PATH'")
    return load_imagefolder(root)


BUILTIN_DATASETS: dict[str, Loader] = {
    "digits": _digits,
    "mnist": _mnist,
    "mnist-train": _mnist_train,
    "mnist-test": _mnist_test,
    "cifar10": load_cifar10,
    "cifar20": load_cifar20,
    "stl10": load_stl10,
    "imagefolder": _imagefolder,
}
"""The core's data sets (registered like a plugin's through ``register_datasets``): each
loader takes the folder of ``NAME:PATH`` (or None) and returns the set."""
DATASET_NAMES: tuple[str, ...] = tuple(BUILTIN_DATASETS)

__all__ = ["BUILTIN_DATASETS", "DATASET_NAMES", "DataError", "ImageSet", "Loader",
           "StreamingImageSet", "load_dataset"]


def load_dataset(spec: str, root: Path | None = None,
                 loaders: Mapping[str, Loader] = BUILTIN_DATASETS
                 ) -> ImageSet | StreamingImageSet:
    """Load a data set from a spec ``NAME`` or ``NAME:PATH`` with one of ``loaders`` (the
    registered datasets; by default the core's: digits, mnist, mnist-train, mnist-test,
    cifar10, cifar20, stl10, imagefolder). ``PATH`` (or ``root`` when no path is given) is the
    folder holding the files."""
    name, _, argument = spec.strip().partition(":")
    name = name.lower()
    if name not in loaders:
        raise DataError(f"unknown dataset {name!r}; {did_you_mean(name, loaders)} "
                        f"(valid: {', '.join(loaders)}; your own images: imagefolder:PATH)")
    folder = Path(argument).expanduser() if argument else root
    return loaders[name](folder)
