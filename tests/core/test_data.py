"""Data loading: digits, MNIST IDX files, image folders, offline errors, ImageSet methods."""

from __future__ import annotations

import gzip
import pickle
import struct
import warnings
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from corekit.data import DATASET_NAMES, DataError, ImageSet, load_dataset
from corekit.data.sources import (
    load_cifar10,
    load_cifar20,
    load_imagefolder,
    load_mnist,
    load_stl10,
)

MNIST_DIR = Path("/work/shared/data/mnist")
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST files not found in {MNIST_DIR} (see /work/shared/data/README.md)",
)


@pytest.fixture(scope="module")
def digits() -> ImageSet:
    return load_dataset("digits")


def test_digits_shape_dtype_labels(digits):
    assert digits.images.shape == (1797, 1, 8, 8)
    assert digits.images.dtype == torch.uint8
    assert int(digits.images.max()) == 255
    assert digits.labels.dtype == torch.int64
    assert digits.num_classes == 10
    assert torch.unique(digits.labels).tolist() == list(range(10))
    assert (len(digits), digits.channels, digits.size) == (1797, 1, 8)
    want_mean = digits.images.double().mean().item() / 255
    assert digits.mean[0] == pytest.approx(want_mean, abs=1e-9)
    want_std = digits.images.double().std(unbiased=False).item() / 255
    assert digits.std[0] == pytest.approx(want_std, abs=1e-9)


def test_batch_is_float_in_unit_range(digits):
    indices = torch.tensor([0, 5, 1796])
    batch = digits.batch(indices)
    assert batch.shape == (3, 1, 8, 8)
    assert batch.dtype == torch.float32
    assert 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
    assert torch.equal(batch, digits.images[indices].float() / 255)


def test_subset_and_to(digits):
    part = digits.subset(100, seed=3)
    assert len(part) == 100 and part.labels.shape == (100,)
    assert torch.equal(part.images, digits.subset(100, seed=3).images)
    assert not torch.equal(part.images, digits.subset(100, seed=4).images)
    moved = part.to("cpu")
    assert isinstance(moved, ImageSet) and moved.images.device.type == "cpu"
    assert digits.subset(10_000, seed=0) is digits


def test_imageset_validates_its_fields():
    with pytest.raises(ValueError, match="uint8"):
        ImageSet("x", torch.zeros(2, 1, 4, 4), None, None, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="labels"):
        ImageSet("x", torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3), 2, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="mean/std"):
        ImageSet("x", torch.zeros(2, 3, 4, 4, dtype=torch.uint8), None, None, (0.5,), (0.5,))


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fake_mnist(folder: Path, n_train: int = 6, n_test: int = 4) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(
            folder / f"{prefix}-images-idx3-ubyte.gz", 2051, rng.integers(0, 256, (n, 28, 28))
        )
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 2049, np.arange(n) % 10)


def test_mnist_reader_on_small_idx_files(tmp_path):
    _fake_mnist(tmp_path)
    assert len(load_mnist(tmp_path, "train")) == 6
    assert len(load_mnist(tmp_path, "test")) == 4
    both = load_dataset(f"mnist:{tmp_path}")
    assert both.images.shape == (10, 1, 28, 28) and both.labels[:6].tolist() == [0, 1, 2, 3, 4, 5]


def test_truncated_gz_names_the_file(tmp_path):
    _fake_mnist(tmp_path)
    target = tmp_path / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:200])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist(tmp_path, "test")


def test_wrong_magic_and_wrong_size_name_the_file(tmp_path):
    _fake_mnist(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2051, np.zeros(4))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*magic"):
        load_mnist(tmp_path, "test")
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(bad, "wb") as handle:
        handle.write(struct.pack(">2I", 2049, 5) + bytes(3))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*truncated"):
        load_mnist(tmp_path, "test")


def test_missing_mnist_file_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz not found.*mnist:DIR"):
        load_mnist(tmp_path, "all")


def _offline(*args, **kwargs):
    raise URLError("[Errno -3] Temporary failure in name resolution")


def test_mnist_download_failure_is_actionable(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPCLUST_DATA", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "MNIST", _offline)
    with pytest.raises(DataError, match=r"No internet\? Pass mnist:DIR"):
        load_dataset("mnist")


@pytest.mark.parametrize(
    ("loader", "attribute", "archive"),
    [
        (load_cifar10, "CIFAR10", "cifar-10-python.tar.gz"),
        (load_cifar20, "CIFAR100", "cifar-100-python.tar.gz"),
        (load_stl10, "STL10", "stl10_binary.tar.gz"),
    ],
)
def test_torchvision_sources_offline(tmp_path, monkeypatch, loader, attribute, archive):
    monkeypatch.setattr(torchvision.datasets, attribute, _offline)
    with pytest.raises(DataError) as caught:
        loader(tmp_path)
    message = str(caught.value)
    assert "No internet?" in message and archive in message and str(tmp_path) in message


class _FakeCifar:
    """Stands in for torchvision's CIFAR classes: 3 train + 2 test images, no network."""

    base_folder = "cifar-100-python"
    train_list = [["train", ""]]
    test_list = [["test", ""]]

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        n = 3 if train else 2
        self.root = root
        self.data = np.full((n, 32, 32, 3), 200 if train else 100, dtype=np.uint8)
        self.targets = [7] * n
        folder = Path(root) / self.base_folder
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ("train" if train else "test")).open("wb") as handle:
            pickle.dump({"coarse_labels": [19 if train else 4] * n}, handle)


def test_cifar_loaders_convert_torchvision_data(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCifar)
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", _FakeCifar)
    cifar10 = load_cifar10(tmp_path)
    assert cifar10.images.shape == (5, 3, 32, 32)
    assert cifar10.images[:, 0, 0, 0].tolist() == [200, 200, 200, 100, 100]
    assert cifar10.labels.tolist() == [7] * 5 and cifar10.num_classes == 10
    cifar20 = load_cifar20(tmp_path)
    assert cifar20.labels.tolist() == [19, 19, 19, 4, 4] and cifar20.num_classes == 20
    assert cifar20.mean == (0.5071, 0.4867, 0.4408)


@needs_mnist
def test_real_mnist_test_split():
    data = load_dataset(f"mnist-test:{MNIST_DIR}")
    assert data.images.shape == (10_000, 1, 28, 28) and data.images.dtype == torch.uint8
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data.labels.bincount().tolist() == counts


@needs_mnist
def test_real_mnist_all():
    data = load_mnist(MNIST_DIR, "all")
    assert data.images.shape == (70_000, 1, 28, 28)
    assert data.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data.num_classes == 10
    assert data.mean[0] == pytest.approx(0.1309, abs=1e-3)


def _png(path: Path, size: tuple[int, int], mode: str = "RGB", value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fill = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, fill).save(path)


def test_imagefolder_classes_resize_and_corrupt_file(tmp_path):
    _png(tmp_path / "cat" / "a.png", (6, 6))
    _png(tmp_path / "cat" / "b.png", (6, 6))
    _png(tmp_path / "dog" / "c.png", (6, 6), mode="L")
    _png(tmp_path / "dog" / "d.png", (9, 5))
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    with pytest.warns(UserWarning, match="broken.png"):
        data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.skipped == 1
    assert data.images.shape == (4, 3, 6, 6) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 0, 1, 1] and data.num_classes == 2
    assert data.images[0, :, 0, 0].tolist() == [128, 127, 7]


def test_imagefolder_flat_grayscale_with_size(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", (8, 8), mode="L", value=40 * i)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_imagefolder(tmp_path, size=4)
    assert data.images.shape == (3, 1, 4, 4)
    assert data.labels is None and data.num_classes is None and data.skipped == 0
    assert data.mean[0] == pytest.approx(40 / 255)


def test_imagefolder_empty_or_missing(tmp_path):
    with pytest.raises(DataError, match="no images found in"):
        load_imagefolder(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_imagefolder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="imagefolder:PATH"):
        load_dataset("imagefolder")


def test_unknown_name_suggests_closest():
    with pytest.raises(DataError, match="did you mean 'mnist'") as caught:
        load_dataset("mnsit")
    listed = str(caught.value).split("(valid: ")[1].split(";")[0].split(", ")
    assert sorted(listed) == sorted(DATASET_NAMES)
