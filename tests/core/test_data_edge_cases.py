"""Image folders as new users bring them: 16-bit, broken files, alpha/palette/CMYK, odd layouts."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corekit.cli import main
from corekit.data import DataError, StreamingImageSet
from corekit.data import sources as data_sources
from corekit.data.errors import DataWarning
from corekit.data.sources import load_imagefolder

SIDE = 64


def _ramp16() -> np.ndarray:
    """A 64×64 uint16 ramp over the whole 16-bit range, 0 → 65535."""
    return np.linspace(0, 65535, SIDE * SIDE).round().astype(np.uint16).reshape(SIDE, SIDE)


def _rgb(path: Path, size: tuple[int, int] = (8, 8), value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 7)).save(path)


def _png16_rgb(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one), from an H×W×3 uint16 array."""
    height, width, _ = pixels.shape
    big = pixels.astype(">u2")
    raw = b"".join(b"\x00" + big[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _write_16bit(path: Path, kind: str, ramp: np.ndarray) -> str:
    """Write ``ramp`` as a 16-bit file of ``kind``; returns the mode PIL opens it in."""
    if kind == "png":
        Image.fromarray(ramp).save(path)
    elif kind == "tif-big-endian":
        Image.frombytes("I;16B", (SIDE, SIDE), ramp.astype(">u2").tobytes()).save(path)
    elif kind == "pgm":
        Image.fromarray(ramp).save(path)
    else:
        Image.fromarray(ramp.astype(np.int32)).save(path)
    with Image.open(path) as image:
        return image.mode


def _load_quietly(folder: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_imagefolder(folder, **kwargs)


def _data_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


# --- 16-bit images are scaled, not clipped ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "suffix", "mode"),
    [("png", ".png", "I;16"), ("tif-big-endian", ".tif", "I;16B"), ("pgm", ".pgm", "I"),
     ("tif-int32", ".tif", "I")],
)
@pytest.mark.parametrize("stream", [False, True])
def test_16bit_grayscale_is_scaled_to_8_bits(tmp_path, kind, suffix, mode, stream):
    ramp = _ramp16()
    assert _write_16bit(tmp_path / f"ramp{suffix}", kind, ramp) == mode
    data = _load_quietly(tmp_path, stream=stream)
    assert data.channels == 1 and data.skipped == 0
    decoded = data.batch(torch.tensor([0]))[0, 0].mul(255).round().numpy()
    assert decoded.min() == 0 and decoded.max() == 255
    assert np.all(np.diff(decoded.reshape(-1)) >= 0)  # ordering kept
    assert np.corrcoef(decoded.reshape(-1), ramp.reshape(-1))[0, 1] > 0.9999
    assert np.abs(decoded - ramp / 257.0).max() <= 0.5 + 1e-6
    assert data.mean[0] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(("kind", "suffix"), [("png", ".png"), ("tif-int32", ".tif")])
def test_dark_16bit_image_keeps_its_absolute_brightness(tmp_path, kind, suffix):
    half = _ramp16() // 2  # 0..32767: a dark image, not stretched to full range
    _write_16bit(tmp_path / f"dark{suffix}", kind, half)
    decoded = _load_quietly(tmp_path).images[0, 0].numpy().astype(float)
    assert decoded.min() == 0 and decoded.max() == 127
    assert np.abs(decoded - half / 257.0).max() <= 0.5 + 1e-6


def test_16bit_gray_next_to_rgb_images_becomes_gray_rgb(tmp_path):
    ramp = _ramp16()
    Image.fromarray(ramp).save(tmp_path / "a16.png")
    _rgb(tmp_path / "b.png", (SIDE, SIDE))
    data = _load_quietly(tmp_path)
    assert data.channels == 3
    first = data.images[0].numpy().astype(float)
    assert np.array_equal(first[0], first[1]) and np.array_equal(first[0], first[2])
    assert np.abs(first[0] - ramp / 257.0).max() <= 0.5 + 1e-6


def test_16bit_rgb_png_keeps_its_range(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, (SIDE, SIDE, 3)).astype(np.uint16)
    pixels[0, 0], pixels[0, 1] = 0, 65535
    _png16_rgb(tmp_path / "rgb16.png", pixels)
    data = _load_quietly(tmp_path)
    decoded = data.images[0].permute(1, 2, 0).numpy().astype(float)
    assert decoded.min() == 0 and decoded.max() == 255
    assert np.abs(decoded - pixels / 257.0).max() <= 1.0


# --- unreadable files: skipped, counted, one summary warning ------------------------------


def _good_and_bad(folder: Path, n_good: int = 6) -> None:
    """``n_good`` readable PNGs in cat/ and dog/, plus a truncated, an empty and a text .png."""
    rng = np.random.default_rng(1)
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_good // 2):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{i}.png")
    big = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(folder / "dog" / "trunc.png")
    whole = (folder / "dog" / "trunc.png").read_bytes()
    (folder / "dog" / "trunc.png").write_bytes(whole[: len(whole) // 2])
    (folder / "cat" / "empty.png").write_bytes(b"")
    (folder / "cat" / "text.png").write_text("this is a text file, not a PNG\n")


@pytest.mark.parametrize("stream", [False, True])
def test_truncated_empty_and_text_files_are_skipped_with_one_summary(tmp_path, stream,
                                                                     monkeypatch):
    _good_and_bad(tmp_path)
    with Image.open(tmp_path / "dog" / "trunc.png") as image:  # the header opens ...
        assert image.size == (64, 64)
        with pytest.raises(OSError):  # ... the data does not
            image.load()
    monkeypatch.setattr(data_sources, "_PROBE_IN_WORKERS", 1)  # streaming probes in workers
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        data = load_imagefolder(tmp_path, stream=stream)
    assert isinstance(data, StreamingImageSet) == stream
    assert len(data) == 6 and data.skipped == 3
    assert sorted(data.names) == sorted(f"{c}/{i}.png" for c in ("cat", "dog") for i in range(3))
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    skips = [m for m in _data_warnings(record) if "skipped" in m]
    assert len(skips) == 1, skips
    assert "skipped 3 of 9 files that could not be read" in skips[0]
    for expected in ("cat/empty.png (empty file)", "cat/text.png (not an image)",
                     "dog/trunc.png (truncated)"):
        assert expected in skips[0]
    batches = list(data.batches(torch.arange(len(data)), 4))  # no crash when streaming
    assert sum(len(i) for i, _ in batches) == 6


def test_many_bad_files_give_one_line_naming_five(tmp_path):
    _good_and_bad(tmp_path)
    for i in range(10):
        (tmp_path / "dog" / f"bad{i:02d}.png").write_bytes(b"")
    with pytest.warns(DataWarning) as record:
        data = load_imagefolder(tmp_path)
    skips = [m for m in _data_warnings(record) if "skipped" in m]
    assert len(skips) == 1 and "\n" not in skips[0]
    assert data.skipped == 13 and "skipped 13 of 19" in skips[0]
    assert skips[0].count(".png (") == 5 and skips[0].endswith("and 8 more")


def test_streaming_grayscale_statistics_match_in_memory(tmp_path):
    for i in range(5):
        Image.new("L", (6, 6), 40 * i).save(tmp_path / f"{i}.png")
    (tmp_path / "z.png").write_bytes(b"")
    with pytest.warns(DataWarning):
        memory = load_imagefolder(tmp_path, stream=False)
    with pytest.warns(DataWarning):
        stream = load_imagefolder(tmp_path, stream=True)
    assert stream.skipped == memory.skipped == 1 and len(stream) == 5
    assert stream.mean == memory.mean and stream.std == memory.std


# --- colour modes and sizes -----------------------------------------------------------------


def test_rgba_is_composited_on_white(tmp_path):
    pixels = np.zeros((4, 4, 4), dtype=np.uint8)
    pixels[0, 0] = (10, 20, 30, 255)  # opaque: kept
    pixels[0, 1] = (0, 0, 0, 0)  # transparent black: white
    pixels[0, 2] = (0, 0, 0, 128)  # half: grey
    Image.fromarray(pixels, "RGBA").save(tmp_path / "a.png")
    data = _load_quietly(tmp_path)
    assert data.channels == 3
    rgb = data.images[0].permute(1, 2, 0)
    assert rgb[0, 0].tolist() == [10, 20, 30]
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert all(abs(v - 127) <= 1 for v in rgb[0, 2].tolist())


def test_palette_la_and_cmyk_images(tmp_path):
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 10, 30, 5, 6, 7])
    palette.putpixel((0, 0), 2)
    palette.save(tmp_path / "p.png")
    clear = Image.new("P", (4, 4), 0)
    clear.putpalette([0, 0, 0, 200, 10, 30])
    clear.info["transparency"] = 0
    clear.putpixel((0, 0), 1)
    clear.save(tmp_path / "q.png", transparency=0)
    Image.new("LA", (4, 4), (50, 0)).save(tmp_path / "r.png")
    Image.new("CMYK", (4, 4), (255, 0, 0, 0)).save(tmp_path / "s.tif")
    data = _load_quietly(tmp_path)
    assert data.names == ("p.png", "q.png", "r.png", "s.tif")
    pixels = data.images.permute(0, 2, 3, 1)
    assert pixels[0, 1, 1].tolist() == [200, 10, 30] and pixels[0, 0, 0].tolist() == [5, 6, 7]
    assert pixels[1, 0, 0].tolist() == [200, 10, 30]
    assert pixels[1, 1, 1].tolist() == [255, 255, 255]  # transparent palette entry: white
    assert pixels[2, 0, 0].tolist() == [255, 255, 255]  # fully transparent LA: white
    assert pixels[3, 0, 0].tolist() == [0, 255, 255]  # CMYK cyan


def test_la_folder_stays_grayscale(tmp_path):
    pixels = np.zeros((4, 4, 2), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1] = 80, 255
    pixels[0, 0] = (0, 0)
    Image.fromarray(pixels, "LA").save(tmp_path / "a.png")
    data = _load_quietly(tmp_path)
    assert data.channels == 1
    assert data.images[0, 0, 0, 0] == 255 and data.images[0, 0, 1, 1] == 80


@pytest.mark.parametrize("stream", [False, True])
def test_mixed_sizes_resized_to_most_common_with_one_warning(tmp_path, stream):
    for i in range(3):
        _rgb(tmp_path / f"{i}.png", (6, 6))
    _rgb(tmp_path / "wide.png", (9, 5))
    with pytest.warns(DataWarning) as record:
        data = load_imagefolder(tmp_path, stream=stream)
    assert data.size == 6 and len(data) == 4
    sized = [m for m in _data_warnings(record) if "resized" in m]
    assert len(sized) == 1 and "resized 1 of 4 to 6×6" in sized[0]
    assert _load_quietly(tmp_path, size=6).size == 6  # an explicit size is not warned about


# --- folder layouts ---------------------------------------------------------------------------


def test_empty_folder_and_folder_of_other_files(tmp_path):
    with pytest.raises(DataError, match=r"no images found in .*expected image files"):
        load_imagefolder(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"found 1 other file\(s\), e\.g\. notes\.txt"):
        load_imagefolder(tmp_path)


@pytest.mark.parametrize("stream", [False, True])
def test_folder_of_only_unreadable_files(tmp_path, stream):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("not a jpeg")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "c.png", compress_level=0)
    whole = (tmp_path / "c.png").read_bytes()
    (tmp_path / "c.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError) as caught:
        load_imagefolder(tmp_path, stream=stream)
    message = str(caught.value)
    assert "no readable images" in message and "all 3 image file(s)" in message
    assert "a.png (empty file)" in message and "b.jpg (not an image)" in message
    assert "c.png (truncated)" in message and "expected image files" in message


def test_class_subfolders_all_empty(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name / "deeper").mkdir(parents=True)
    (tmp_path / "cat" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"2 subfolder\(s\) \(cat, dog\) hold no image files.*"
                                        r"one subfolder per class"):
        load_imagefolder(tmp_path)


def test_empty_subfolder_next_to_classes_is_dropped_with_a_warning(tmp_path):
    _rgb(tmp_path / "cat" / "a.png")
    _rgb(tmp_path / "dog" / "b.png")
    (tmp_path / "empty").mkdir()
    with pytest.warns(DataWarning, match=r"1 subfolder\(s\) without images are not classes: empty"):
        data = load_imagefolder(tmp_path)
    assert data.num_classes == 2


@pytest.mark.parametrize("layout", ["empty", "unreadable", "empty-classes"])
def test_cli_refuses_with_exit_2(tmp_path, capsys, layout):
    if layout == "unreadable":
        (tmp_path / "a.png").write_bytes(b"")
    elif layout == "empty-classes":
        (tmp_path / "cat").mkdir()
    assert main(["check", "simclr-kmeans", "--data", f"imagefolder:{tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "deepclust: error:" in err and "expected" in err and "Traceback" not in err


@pytest.mark.parametrize("stream", [False, True])
def test_single_class_is_accepted_with_a_warning(tmp_path, stream):
    for i in range(3):
        _rgb(tmp_path / "only" / f"{i}.png")
    with pytest.warns(DataWarning, match=r"one class subfolder \('only'\).*meaningless"):
        data = load_imagefolder(tmp_path, stream=stream)
    assert data.num_classes == 1 and data.labels.tolist() == [0, 0, 0]


def test_nested_folders_included_hidden_ignored(tmp_path):
    _rgb(tmp_path / "cat" / "a.png")
    _rgb(tmp_path / "cat" / "2019" / "b.png")
    _rgb(tmp_path / "cat" / "2019" / "deep" / "c.png")
    _rgb(tmp_path / "cat" / ".thumbs" / "t.png")
    _rgb(tmp_path / "cat" / "2019" / ".cache" / "u.png")
    _rgb(tmp_path / "cat" / "._a.png")
    _rgb(tmp_path / "dog" / "d.png")
    _rgb(tmp_path / ".git" / "e.png")
    (tmp_path / "dog" / ".DS_Store").write_bytes(b"\x00\x01")
    data = _load_quietly(tmp_path)
    assert data.names == ("cat/2019/b.png", "cat/2019/deep/c.png", "cat/a.png", "dog/d.png")
    assert data.labels.tolist() == [0, 0, 0, 1] and data.skipped == 0
