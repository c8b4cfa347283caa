"""Inputs around a run (issue 33, part B): values that would reach torch unchecked, images with
an EXIF orientation, unreadable folder entries, ``--set`` values, ``preset``, ``--budget``,
``weights`` and how warnings are shown. Each bad input ends in exit 2 with a message that
names the key, never a traceback."""

import pytest

from corekit import recipe as rc
from corekit.cli import main
from corekit.components import augment as A
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
