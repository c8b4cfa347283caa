"""Loaders, one per data source, each returning an in-memory :class:`ImageSet`."""

from __future__ import annotations

import errno
import gzip
import os
import pickle
import stat
import struct
import tarfile
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from corekit.data.dataset import ImageSet, channel_stats
from corekit.data.errors import DataError, DataWarning
from corekit.data.stream import (
    DECODE_ERRORS,
    SIXTEEN_BIT_MODES,
    StreamingImageSet,
    decode_image,
    histogram_stats,
    probe_files,
    skip_reason,
    upright_size,
)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
_EXTENSIONS = ", ".join(sorted(IMAGE_EXTENSIONS))
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"}) | SIXTEEN_BIT_MODES
_NAMED_SKIPS = 5
"""Files named in a skip warning or error; the rest are counted."""
_PROBE_IN_WORKERS = 512
"""Streaming folders with at least this many files are probe-decoded in worker processes."""
_FETCH_ERRORS = (OSError, RuntimeError, EOFError, tarfile.TarError, pickle.UnpicklingError)


def default_root(name: str) -> Path:
    """Default data folder for ``name``: ``$DEEPCLUST_DATA/name`` or ``~/.cache/deepclust/name``."""
    base = os.environ.get("DEEPCLUST_DATA")
    return (Path(base) if base else Path.home() / ".cache" / "deepclust") / name


def load_digits_set() -> ImageSet:
    """scikit-learn's 1,797 8×8 digits (values 0..16 scaled to 0..255), 1 channel, 10 classes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    scaled = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = torch.from_numpy(scaled).unsqueeze(1)
    mean, std = channel_stats(images)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return ImageSet("digits", images, labels, 10, mean, std)


def load_mnist(root: Path | None = None, split: str = "all") -> ImageSet:
    """MNIST from the four original gzipped IDX files.

    ``split`` is "train" (60k), "test" (10k) or "all" (70k, train then test). With
    ``root=None`` the files are looked up in :func:`default_root` and, if missing there,
    downloaded with torchvision; an explicit ``root`` is never downloaded into.
    """
    if split not in ("train", "test", "all"):
        raise DataError(f"unknown MNIST split {split!r}; expected 'train', 'test' or 'all'")
    parts = ["train", "test"] if split == "all" else [split]
    folder = default_root("mnist") if root is None else Path(root)
    if root is None and any(_find_mnist_file(folder, name) is None for name in _names(parts)):
        _download_mnist(folder)
    images, labels = [], []
    for part in parts:
        image_name, label_name = MNIST_FILES[part]
        part_images = _read_idx(_require_mnist_file(folder, image_name), 2051, 3)
        part_labels = _read_idx(_require_mnist_file(folder, label_name), 2049, 1)
        if len(part_images) != len(part_labels):
            raise DataError(
                f"MNIST {part} files in {folder} disagree: {len(part_images)} images but "
                f"{len(part_labels)} labels; re-download them from {MNIST_URL}"
            )
        images.append(torch.from_numpy(part_images).unsqueeze(1))
        labels.append(torch.from_numpy(part_labels.astype(np.int64)))
    image_tensor = torch.cat(images)
    mean, std = channel_stats(image_tensor)
    name = "mnist" if split == "all" else f"mnist-{split}"
    return ImageSet(name, image_tensor, torch.cat(labels), 10, mean, std)


def _names(parts: list[str]) -> list[str]:
    return [name for part in parts for name in MNIST_FILES[part]]


def _find_mnist_file(folder: Path, name: str) -> Path | None:
    for directory in (folder, folder / "MNIST" / "raw", folder / "raw"):
        for candidate in (directory / f"{name}.gz", directory / name):
            if candidate.is_file():
                return candidate
    return None


def _require_mnist_file(folder: Path, name: str) -> Path:
    found = _find_mnist_file(folder, name)
    if found is None:
        raise DataError(
            f"MNIST file {name}.gz not found in {folder}. Put the four original files "
            f"({', '.join(f'{n}.gz' for n in _names(['train', 'test']))}) there; they can be "
            f"downloaded from {MNIST_URL}. Or pass mnist:DIR naming a folder that holds them."
        )
    return found


def _download_mnist(folder: Path) -> None:
    try:
        from torchvision import datasets
    except ImportError:
        return
    try:
        datasets.MNIST(str(folder), train=True, download=True)
    except _FETCH_ERRORS as err:
        raise DataError(
            f"MNIST files are not in {folder} and downloading them failed ({err}). No internet? "
            f"Pass mnist:DIR with the four files ({', '.join(_names(['train', 'test']))}, "
            f"each .gz) from {MNIST_URL}."
        ) from err


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path} is corrupt or truncated ({err}); re-download it from {MNIST_URL}"
        ) from err
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"{path} is too short to be an IDX file; re-download it from {MNIST_URL}")
    found, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])
    if found != magic:
        raise DataError(
            f"{path} is not the expected MNIST IDX file (magic number {found}, expected "
            f"{magic}); re-download it from {MNIST_URL}"
        )
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is corrupt or truncated: its header promises {expected} bytes of data "
            f"{tuple(dims)} but it holds {len(raw) - header}; re-download it from {MNIST_URL}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _fetch(label: str, spec: str, root: Path, hint: str, build: Callable[[Any], Any]) -> Any:
    """Run a torchvision download/load call, turning failures into an actionable DataError."""
    from torchvision import datasets

    try:
        return build(datasets)
    except _FETCH_ERRORS as err:
        raise DataError(
            f"could not get {label} into {root} ({err}). No internet? {hint} "
            f"To use another folder that holds it, pass {spec}:DIR."
        ) from err


def load_cifar10(root: Path | None = None) -> ImageSet:
    """CIFAR-10 train+test (60,000 32×32 RGB, 10 classes) via torchvision (downloads if needed)."""
    folder = default_root("cifar10") if root is None else Path(root)
    hint = (
        "Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        f"and put it (or its extracted cifar-10-batches-py folder) in {folder}."
    )
    parts = [
        _fetch(
            "CIFAR-10",
            "cifar10",
            folder,
            hint,
            lambda d, t=t: d.CIFAR10(str(folder), t, download=True),
        )
        for t in (True, False)
    ]
    images = torch.from_numpy(np.concatenate([p.data for p in parts])).permute(0, 3, 1, 2)
    labels = torch.tensor([y for p in parts for y in p.targets], dtype=torch.int64)
    return ImageSet("cifar10", images.contiguous(), labels, 10, CIFAR10_MEAN, CIFAR10_STD)


def load_cifar20(root: Path | None = None) -> ImageSet:
    """CIFAR-100 train+test with its 20 coarse super-class labels ("CIFAR-20"), via torchvision."""
    folder = default_root("cifar100") if root is None else Path(root)
    hint = (
        "Download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        f"and put it (or its extracted cifar-100-python folder) in {folder}."
    )
    images, labels = [], []
    for train in (True, False):
        part = _fetch(
            "CIFAR-100",
            "cifar20",
            folder,
            hint,
            lambda d, t=train: d.CIFAR100(str(folder), t, download=True),
        )
        file_name = (part.train_list if train else part.test_list)[0][0]
        path = Path(part.root) / part.base_folder / file_name
        with path.open("rb") as handle:
            coarse = pickle.load(handle, encoding="latin1")["coarse_labels"]
        images.append(part.data)
        labels.extend(coarse)
    image_tensor = torch.from_numpy(np.concatenate(images)).permute(0, 3, 1, 2).contiguous()
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    return ImageSet("cifar20", image_tensor, label_tensor, 20, CIFAR100_MEAN, CIFAR100_STD)


def load_stl10(root: Path | None = None) -> ImageSet:
    """STL-10 labelled train+test (13,000 96×96 RGB, 10 classes) via torchvision."""
    folder = default_root("stl10") if root is None else Path(root)
    hint = (
        "Download stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/ "
        f"and put it (or its extracted stl10_binary folder) in {folder}."
    )
    parts = [
        _fetch(
            "STL-10",
            "stl10",
            folder,
            hint,
            lambda d, s=s: d.STL10(str(folder), split=s, download=True),
        )
        for s in ("train", "test")
    ]
    images = torch.from_numpy(np.concatenate([p.data for p in parts]))
    labels = torch.from_numpy(np.concatenate([p.labels for p in parts]).astype(np.int64))
    return ImageSet("stl10", images.contiguous(), labels, 10, IMAGENET_MEAN, IMAGENET_STD)


def in_memory_limit() -> int:
    """Bytes of decoded images above which a folder streams (``DEEPCLUST_IN_MEMORY_BYTES``)."""
    return int(os.environ.get("DEEPCLUST_IN_MEMORY_BYTES", 4 << 30))


def load_imagefolder(
    path: Path, size: int | None = None, stream: bool | None = None
) -> ImageSet | StreamingImageSet:
    """Images from a folder: one subfolder per class (labels from sorted names) or flat (no labels).

    Class subfolders are searched recursively; hidden files and folders (names starting with
    ".") are ignored. Images are decoded with PIL, turned upright by their EXIF orientation,
    to RGB (or L when every image is grayscale;
    16-bit scaled to 8 bits, transparency composited on white, see
    :func:`~corekit.data.stream.to_8bit`) and resized to ``size``×``size`` (default: the most
    common size, with one warning saying how many were resized). Files that cannot be opened
    or decoded (empty, truncated, not an image, a dangling symlink, a FIFO or a device) are
    skipped, never opened where they are no regular file, with one warning that counts them
    and names a few; the count is kept in ``ImageSet.skipped``. A folder with nothing readable
    raises :class:`DataError`; a single class is accepted with a warning.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    files, labels, classes = _list_images(folder)
    if not files:
        raise DataError(f"no images found in {folder}; expected image files ({_EXTENSIONS}) "
                        f"directly in it or in one subfolder per class{_others(folder)}")
    headers: list[tuple[Path, int | None, tuple[int, int], str]] = []
    skipped: list[tuple[str, str]] = []
    for file, label in zip(files, labels, strict=True):
        problem = _not_a_file(file)
        if problem is not None:  # never opened: a FIFO would block
            skipped.append((_name(folder, file), problem))
            continue
        try:
            with Image.open(file) as image:
                headers.append((file, label, upright_size(image), image.mode))
        except DECODE_ERRORS as err:
            skipped.append((_name(folder, file), skip_reason(file, err)))
    if not headers:
        raise _nothing_readable(folder, len(files), skipped)
    target = (size, size) if size else Counter(h[2] for h in headers).most_common(1)[0][0]
    mode = "L" if all(h[3] in _GRAY_MODES for h in headers) else "RGB"
    channels = 1 if mode == "L" else 3
    if stream or (stream is None and len(headers) * target[0] * target[1] * channels
                  > in_memory_limit()):
        data: ImageSet | StreamingImageSet
        data, kept = _streaming(folder, headers, classes, mode, target, skipped, len(files))
    else:
        data, kept = _in_memory(folder, headers, classes, mode, target, skipped, len(files))
    _warn_skipped(folder, skipped, len(files))
    if not size:
        _warn_resized(folder, [h[2] for h in kept], target)
    if data.labels is not None:
        _warn_single_class(folder, classes or [], data.labels)
    return data


def _in_memory(folder: Path, headers: list, classes: list[str] | None, mode: str,
               target: tuple[int, int], skipped: list[tuple[str, str]], total: int
               ) -> tuple[ImageSet, list]:
    arrays, kept = [], []
    for header in headers:
        try:
            arrays.append(decode_image(header[0], mode, target))
            kept.append(header)
        except DECODE_ERRORS as err:
            skipped.append((_name(folder, header[0]), skip_reason(header[0], err)))
    if not arrays:
        raise _nothing_readable(folder, total, skipped)
    stacked = np.stack(arrays)
    images = torch.from_numpy(stacked[:, None] if mode == "L" else stacked.transpose(0, 3, 1, 2))
    images = images.contiguous()
    if mode == "L":
        mean, std = channel_stats(images)
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    labels = None if classes is None else torch.tensor([h[1] for h in kept], dtype=torch.int64)
    num_classes = None if classes is None else len(classes)
    names = [_name(folder, h[0]) for h in kept]
    return ImageSet(folder.name, images, labels, num_classes, mean, std, len(skipped),
                    names, classes=classes), kept


def _streaming(folder: Path, headers: list, classes: list[str] | None, mode: str,
               target: tuple[int, int], skipped: list[tuple[str, str]],
               total: int) -> tuple[StreamingImageSet, list]:
    """A folder decoded per batch, each file probe-decoded once now (see ``probe_files``).

    The probe drops files whose data fails to decode and, for grayscale, gives exact
    statistics over every image.
    """
    workers = min(4, os.cpu_count() or 1) if len(headers) >= _PROBE_IN_WORKERS else 0
    reasons, counts = probe_files([h[0] for h in headers], mode, target, workers,
                                  histogram=mode == "L")
    kept = []
    for header, reason in zip(headers, reasons, strict=True):
        if reason is None:
            kept.append(header)
        else:
            skipped.append((_name(folder, header[0]), reason))
    if not kept:
        raise _nothing_readable(folder, total, skipped)
    labels = None if classes is None else torch.tensor([h[1] for h in kept], dtype=torch.int64)
    files = [h[0] for h in kept]
    if mode == "L" and counts is not None:
        mean, std = histogram_stats(counts)
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    names = [_name(folder, f) for f in files]
    num_classes = None if classes is None else len(classes)
    return StreamingImageSet(folder.name, files, labels, num_classes, mean, std, mode, target,
                             len(skipped), names, classes=classes), kept


def _name(folder: Path, file: Path) -> str:
    return file.relative_to(folder).as_posix()


def _listed(skipped: list[tuple[str, str]]) -> str:
    named = ", ".join(f"{name} ({reason})" for name, reason in skipped[:_NAMED_SKIPS])
    more = len(skipped) - _NAMED_SKIPS
    return named + (f" and {more} more" if more > 0 else "")


def _nothing_readable(folder: Path, total: int, skipped: list[tuple[str, str]]) -> DataError:
    return DataError(
        f"no readable images in {folder}: all {total} image file(s) failed to open or decode: "
        f"{_listed(skipped)}; expected image files PIL can read ({_EXTENSIONS}), re-copy or "
        f"re-export them"
    )


def _warn_skipped(folder: Path, skipped: list[tuple[str, str]], total: int) -> None:
    if skipped:
        warnings.warn(f"{folder}: skipped {len(skipped)} of {total} files that could not be "
                      f"read: {_listed(skipped)}", DataWarning, stacklevel=3)


def _warn_resized(folder: Path, sizes: list[tuple[int, int]], target: tuple[int, int]) -> None:
    resized = sum(s != target for s in sizes)
    if resized:
        warnings.warn(f"{folder}: images differ in size; resized {resized} of {len(sizes)} to "
                      f"{target[0]}×{target[1]} (W×H), the most common size", DataWarning,
                      stacklevel=3)


def _warn_single_class(folder: Path, classes: list[str], labels: torch.Tensor) -> None:
    present = sorted(set(labels.tolist()))
    if len(present) == 1:
        name = classes[present[0]] if present[0] < len(classes) else str(present[0])
        warnings.warn(
            f"{folder}: every image is in one class subfolder ({name!r}), so the labels are a "
            f"single class and NMI/ACC/ARI against them are meaningless; add one subfolder per "
            f"class, or put the images directly in {folder} to cluster without labels",
            DataWarning, stacklevel=3)


def _others(folder: Path) -> str:
    others = [p.name for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()]
    return f" (found {len(others)} other file(s), e.g. {sorted(others)[0]})" if others else ""


def _is_image(path: Path) -> bool:
    """Whether ``path`` is named as an image and is no folder: regular files, and the entries
    that cannot be read (``_not_a_file``), which are skipped with the other unreadable files."""
    visible = not path.name.startswith(".")
    return visible and path.suffix.lower() in IMAGE_EXTENSIONS and not path.is_dir()


def _not_a_file(path: Path) -> str | None:
    """Why the entry ``path`` is not a regular file to read, or None when it is one."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "dangling symlink"
    except OSError as err:
        return "symlink loop" if err.errno == errno.ELOOP else f"cannot be read: {err.strerror}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    return "a socket, not a file" if stat.S_ISSOCK(mode) else "not a regular file"


def _list_images(folder: Path) -> tuple[list[Path], list[int | None], list[str] | None]:
    """Image files in ``folder`` with their labels, and class names (None for a flat folder).

    A flat folder is read as is; class subfolders recursively, skipping anything under a
    hidden folder. Subfolders without images are left out (with a warning); when all are
    empty, :class:`DataError`.
    """
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        files = sorted(p for p in folder.iterdir() if _is_image(p))
        return files, [None] * len(files), None
    loose = sorted(p.name for p in folder.iterdir() if _is_image(p))
    if loose:
        warnings.warn(
            f"{folder} has class subfolders, so {len(loose)} image(s) directly in it are "
            f"ignored (e.g. {loose[0]})",
            DataWarning,
            stacklevel=3,
        )
    per_class = {d.name: sorted(p for p in d.rglob("*") if _is_image(p) and _visible(p, d))
                 for d in subfolders}
    classes = [name for name, found in per_class.items() if found]
    empty = [name for name, found in per_class.items() if not found]
    if not classes:
        shown = ", ".join(empty[:_NAMED_SKIPS]) + (", ..." if len(empty) > _NAMED_SKIPS else "")
        raise DataError(
            f"no images found in {folder}: its {len(empty)} subfolder(s) ({shown}) hold no "
            f"image files ({_EXTENSIONS}); expected one subfolder per class with the images "
            f"inside (nested folders are searched), or images directly in {folder} with no "
            f"subfolders" + (f" ({len(loose)} image(s) there are ignored because subfolders "
                             f"exist)" if loose else "")
        )
    if empty:
        warnings.warn(f"{folder}: {len(empty)} subfolder(s) without images are not classes: "
                      f"{', '.join(empty[:_NAMED_SKIPS])}", DataWarning, stacklevel=3)
    files, labels = [], []
    for label, name in enumerate(classes):
        files.extend(per_class[name])
        labels.extend([label] * len(per_class[name]))
    return files, labels, classes


def _visible(path: Path, base: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(base).parts)
