"""Inputs around a run (issue 33, part B): values that would reach torch unchecked, images with
an EXIF orientation, unreadable folder entries, ``--set`` values, ``preset``, ``--budget``,
``weights`` and how warnings are shown. Each bad input ends in exit 2 with a message that
names the key, never a traceback."""

import os
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from corekit import recipe as rc
from corekit.cli import main
from corekit.components import augment as A
from corekit.data.sources import load_imagefolder
from corekit.testing import tiny_recipe

QUICK = ["--data", "digits", "--set", "data.subset=64", "--set", "train.epochs=1",
         "--set", "train.steps_per_epoch=2", "--set", "train.batch_size=32", "--no-progress"]


@pytest.mark.parametrize("setting, message", [
    ("model.backbone.hidden=0", "model.backbone.hidden: 0 is out of range"),
    ("augment.shear=-5", "augment.shear: -5 is out of range; expected 0 <= value <= 180"),
    ("augment.rotate=-5", "augment.rotate: -5 is out of range"),
    ("augment.crop_scale=[]", "augment.crop_scale: [] is out of range"),
    ("augment.crop_scale=[0.0]", "augment.crop_scale: [0.0] is out of range"),
    ("augment.crop_ratio=[]", "augment.crop_ratio: [] is out of range"),
    ("augment.crop_ratio=[-1.0, 2.0]", "augment.crop_ratio: [-1.0, 2.0] is out of range"),
    ("augment.crop_ratio=['a', 'b']", "augment.crop_ratio: ['a', 'b'] is out of range"),
    ("augment.strength=1e300", "augment.strength: 1e+300 is out of range"),
])
def test_values_that_would_reach_torch_are_refused_with_the_key(tmp_path, capsys, setting,
                                                                  message):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(rc.to_toml(tiny_recipe()), encoding="utf-8")
    code = main(["train", str(recipe), *QUICK, "--set", setting, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("options, message", [
    ({"shear": -5.0}, "shear"), ({"rotate": -1.0}, "rotate"),
    ({"crop_scale": ()}, "crop_scale"), ({"crop_ratio": (2.0, 1.0)}, "crop_ratio"),
    ({"crop_ratio": ("a", "b")}, "crop_ratio"),
])
def test_the_view_pipelines_refuse_what_they_cannot_draw(options, message):
    """Built from Python (a plugin's pipeline) too: a ValueError when built, not a torch error
    at the first step."""
    with pytest.raises(ValueError, match=message):
        A.simclr(8, 1, **options)


def _sideways_jpeg(path: Path) -> None:
    """A 32×16 (W×H) JPEG stored sideways: left half black, right half white, with the EXIF
    orientation 6 (turn 90° clockwise to view), so upright it is 16×32 with the top half
    black."""
    pixels = np.zeros((16, 32), dtype=np.uint8)
    pixels[:, 16:] = 255
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    Image.fromarray(pixels).save(path, exif=exif, quality=95)


@pytest.mark.parametrize("stream", [False, True])
def test_exif_orientation_is_applied(tmp_path, stream):
    _sideways_jpeg(tmp_path / "phone.jpg")
    Image.fromarray(np.full((32, 16), 128, dtype=np.uint8)).save(tmp_path / "upright.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "resized" warning: both are 16×32 upright
        data = load_imagefolder(tmp_path, stream=stream)
    image = data.batch(torch.tensor([data.names.index("phone.jpg")]))[0, 0]
    assert image.shape == (32, 16)
    assert image[:16].mean() < 0.1 and image[16:].mean() > 0.9


@pytest.mark.parametrize("stream", [False, True])
def test_entries_that_are_no_files_are_named_in_the_skip_warning(tmp_path, stream):
    """Dangling symlinks, symlink loops, FIFOs and devices named *.png are skipped (never
    opened: a FIFO would block) and named with the other unreadable files."""
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "device.png").symlink_to("/dev/null")
    (tmp_path / "empty.png").write_bytes(b"")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        data = load_imagefolder(tmp_path, stream=stream)
    assert len(data) == 3 and data.skipped == 5
    (skips,) = [str(w.message) for w in record if "skipped" in str(w.message)]
    assert "skipped 5 of 8 files that could not be read" in skips
    for named in ("dangling.png (dangling symlink)", "loop.png (symlink loop)",
                  "fifo.png (a FIFO, not a file)", "device.png (a device, not a file)",
                  "empty.png (empty file)"):
        assert named in skips


@pytest.mark.parametrize("text", ['augment.type=["weak",', "augment.type=[weak]",
                                  'augment.type="weak', "augment.type='weak",
                                  "augment.options={a = ", 'augment.type=weak"]'])
def test_a_set_value_that_is_broken_toml_is_refused(text, capsys):
    with pytest.raises(rc.RecipeError, match="not a valid TOML value"):
        rc.parse_override(text)
    assert main(["check", "simclr-kmeans", "--set", text]) == 2
    assert "not a valid TOML value" in capsys.readouterr().err


@pytest.mark.parametrize("text, value", [
    ("augment.type=weak", "weak"), ("train.budget=10m", "10m"), ("train.device=cuda:1", "cuda:1"),
    ("data.name=imagefolder:/my photos/2024", "imagefolder:/my photos/2024"),
    ("train.epochs=5", 5), ('augment.type=["weak", "strong"]', ["weak", "strong"]),
    ("description=", ""),
])
def test_bare_words_stay_strings(text, value):
    assert rc.parse_override(text)[1] == value


@pytest.mark.parametrize("line, message", [
    ("preset = 0", "preset: expected str, got int 0"),
    ("preset = []", "preset: expected str, got list []"),
    ("preset = {a = 1}", "preset: expected str, got dict"),
    ("extends = 0", "extends: expected str, got int 0"),
    ("extends = []", "extends: expected str, got list []"),
    ("stage = 0", "stage: expected [[stage]] tables"),
    ("stages = false", "stages: expected a table of stage names"),
    ("presets = {digits = 0}", "presets.digits: expected a table"),
    ("auto = 0", "auto: expected a table, got 0"),
    ("auto = []", "auto: expected a table, got []"),
])
def test_top_level_keys_of_the_wrong_type_are_refused(tmp_path, capsys, line, message):
    path = tmp_path / "recipe.toml"
    path.write_text(f"{line}\n[train]\nepochs = 1\n", encoding="utf-8")
    assert main(["check", str(path), "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_bare_number_budget_is_seconds(tmp_path, capsys):
    assert rc.parse_budget("90") == 90.0 and rc.parse_budget(" 2.5 ") == 2.5
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(rc.to_toml(tiny_recipe()), encoding="utf-8")
    assert main(["train", str(recipe), *QUICK, "--budget", "3", "--out",
                 str(tmp_path / "run")]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("budget", ["0", "0s", "0.0m"])
def test_a_zero_budget_must_be_positive(tmp_path, capsys, budget):
    assert main(["train", "simclr-kmeans", *QUICK, "--budget", budget, "--out",
                 str(tmp_path / "run")]) == 2
    assert f"--budget: {budget!r} must be positive" in capsys.readouterr().err


def test_weights_naming_a_folder_says_so(tmp_path, capsys):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(rc.to_toml(tiny_recipe(model={"backbone": {"weights": str(tmp_path)}})),
                      encoding="utf-8")
    assert main(["check", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is a folder, not a weights file" in err and "does not exist" not in err


def test_each_warning_is_one_line_said_once(tmp_path):
    """A real command: the ``auto`` preset looks at the images, then the check loads them
    again; each data warning and the recipe's warning is one line, said once."""
    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 20 * i, dtype=np.uint8)).save(
                folder / label / f"{i}.png")
    Image.fromarray(np.zeros((10, 8), dtype=np.uint8)).save(folder / "a" / "tall.png")
    (folder / "b" / "bad.png").write_text("not an image")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(rc.to_toml(tiny_recipe(
        losses={"late": {"type": "nt_xent", "head": "proj", "start_epoch": 5}})),
        encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "corekit.cli", "check", str(recipe), "--data",
         f"imagefolder:{folder}", "--set", "train.epochs=1"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    said = [line for line in lines if "warning" in line.lower()]
    for part in ("skipped 1 of 14 files", "resized 1 of 13", "losses.late.start_epoch = 5"):
        (line,) = [line for line in said if part in line]
        assert line.startswith("deepclust: warning: ")
    assert len(said) == len(set(said)), done.stderr
    assert not any("corekit/" in line or line.startswith(" ") for line in lines), done.stderr


def test_a_recipe_with_control_characters_renders_as_toml_that_reads_back():
    """A multi-line description (or a tab, or any control character) in a recipe: the run
    folder's recipe.toml must read back to the same tables."""
    raw = tiny_recipe(description="line one\nline two\ttabbed \x01\x7f \\ \"quoted\"",
                      vars={"we\nird": "\x1b[0m"})
    assert tomllib.loads(rc.to_toml(raw)) == raw


@pytest.mark.parametrize("late, message", [
    ({"weight": 0}, "no term trains in the first epoch (every weight is 0)"),
    ({"start_epoch": 3}, "no term trains in the first epoch (the first term starts at epoch 3)"),
])
def test_a_stage_whose_first_epoch_trains_nothing_is_refused(tmp_path, capsys, late, message):
    """Found by the train fuzz: a step with no active loss term was a TypeError."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(rc.to_toml(tiny_recipe(losses={"instance": late})), encoding="utf-8")
    assert main(["train", str(recipe), "--no-progress", "--out", str(tmp_path / "run")]) == 2
    assert f"losses: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("sections, message", [
    ({"train": {"batch_size": 1}},
     "train.batch_size: 1 is out of range; expected 2 <= value <= 1e+09"),
    ({"train": {"streams": {"main": {"batch_size": 1}}}},
     "train.streams.main.batch_size: 1 is out of range; expected 2 <= value"),
    ({"clusterer": {"n_init": 10**12}},
     "clusterer.n_init: 1000000000000 is out of range; expected 1 <= value <= 1000"),
])
def test_values_found_by_the_train_fuzz_are_refused(tmp_path, capsys, sections, message):
    """A step of one image cannot train BatchNorm (a ValueError at the first step); 10^12
    k-means restarts never end."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(rc.to_toml(tiny_recipe(**sections)), encoding="utf-8")
    assert main(["train", str(recipe), "--no-progress", "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_a_set_value_that_is_not_utf8_is_refused(tmp_path, capsys):
    """A Latin-1 terminal's 'café' reaches Python as a lone surrogate, which no recipe.toml
    can hold (it was a UnicodeEncodeError when the run folder was written)."""
    latin1 = os.fsdecode(b"description=caf\xe9")
    assert main(["train", "simclr-kmeans", *QUICK, "--set", latin1, "--out",
                 str(tmp_path / "run")]) == 2
    assert "is not valid UTF-8 (byte 0xe9)" in capsys.readouterr().err


def test_a_part_too_large_for_memory_is_exit_2_naming_its_table(capsys):
    """A 10^8-wide hidden layer asks torch's allocator for 100 GB: its RuntimeError was a
    traceback."""
    assert main(["check", "cc", "--data", "digits", "--set",
                 "model.backbone.hidden=100000000"]) == 2
    err = capsys.readouterr().err
    assert "model.backbone: cannot build backbone 'mlp' with these options" in err
    assert "lower the sizes in model.backbone" in err and "Traceback" not in err


def test_a_data_path_that_is_not_utf8_is_refused(tmp_path, capsys):
    """A folder named in Latin-1 cannot be written into the run's recipe.toml (it was a
    UnicodeEncodeError when the run folder was written)."""
    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    assert main(["train", "simclr-kmeans", *QUICK[2:], "--data", f"imagefolder:{folder}",
                 "--out", str(tmp_path / "run")]) == 2
    assert "--data 'imagefolder:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_top_level_set_that_a_stage_table_shadows_says_so(tmp_path):
    """A stage's own table wins over the top level, so ``--set train.epochs=3`` does not reach
    a stage that sets its epochs: it was silently ignored; now a warning names the stage and
    the ``--set stage.N.KEY`` that reaches it (a stage that does not set it stays quiet)."""
    recipe = tmp_path / "two.toml"
    recipe.write_text(
        'name = "two"\n[train]\nepochs = 5\n'
        '[[stage]]\nname = "a"\n[stage.train]\nepochs = 7\n'
        '[[stage]]\nname = "b"\n', encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stages = rc.resolve(str(recipe), lambda name: tmp_path / f"{name}.toml", None,
                            ["train.epochs=3"]).stages
    assert [s.train.epochs for s in stages] == [7, 3]
    lines = [str(w.message) for w in caught]
    assert lines == ["--set train.epochs=3 does not reach stage 'a', whose table sets it to "
                     "7; use --set stage.0.train.epochs=... for that stage"]


def test_a_preset_change_of_a_lone_unnamed_stage_that_shadows_a_set_says_so(tmp_path):
    """A lone unnamed ``[[stage]]`` is called ``main`` (``rc.stage_name``, as validation
    names it), so a preset's ``stages.main`` change that shadows a top-level ``--set`` is
    found, and the warning names ``main``."""
    recipe = tmp_path / "one.toml"
    recipe.write_text(
        'name = "one"\n[train]\nepochs = 5\n[[stage]]\n[stage.model.backbone]\ntype = "mlp"\n'
        '[presets.small.stages.main.train]\nepochs = 9\n', encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stages = rc.resolve(str(recipe), lambda name: tmp_path / f"{name}.toml", "small",
                            ["train.epochs=3"]).stages
    assert [s.name for s in stages] == ["main"] and stages[0].train.epochs == 9
    assert [str(w.message) for w in caught] == [
        "--set train.epochs=3 does not reach stage 'main', whose table sets it to 9; use "
        "--set stage.0.train.epochs=... for that stage"]
