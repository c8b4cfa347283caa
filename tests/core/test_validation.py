"""Bad input ends in exit 2 with the key and the valid range, never a traceback; nonsense is
refused at validation (issue: reliability). Every range lives in ``corekit.recipe.RANGES``."""

import pytest

from corekit import recipe as rc
from corekit.cli import main
from corekit.testing import tiny_recipe

REFUSED = [
    ({"train": {"optimizer": {"lr": -0.1}}}, "train.optimizer.lr: -0.1 is out of range"),
    ({"train": {"optimizer": {"lr": float("nan")}}}, "train.optimizer.lr: nan is out of range"),
    ({"train": {"optimizer": {"lr": 1e9}}}, "expected 0 < value <= 10"),
    ({"train": {"batch_size": 0}}, "train.batch_size: 0 is out of range"),
    ({"data": {"subset": -3}}, "data.subset: -3 is out of range"),
    ({"train": {"device": "tpu"}}, "train.device: 'tpu' is not a device"),
    ({"train": {"epochs": -1}}, "train.epochs: -1 is out of range"),
    ({"train": {"epochs": 10 ** 7}}, "train.epochs: 10000000 is out of range"),
    ({"train": {"steps_per_epoch": 0}}, "train.steps_per_epoch: 0 is out of range"),
    ({"data": {"n_clusters": 0}}, "data.n_clusters: 0 is out of range"),
    ({"augment": {"size": 0}}, "augment.size: 0 is out of range"),
    ({"train": {"optimizer": {"lr_mult": {"heads.proj": 0}}}}, "every multiplier must be > 0"),
    ({"model": {"target": {"momentum": 1.5}}}, "model.target.momentum: 1.5 is out of range"),
]


@pytest.mark.parametrize("sections, message", REFUSED, ids=[m.split(":")[0] for _, m in REFUSED])
def test_out_of_range_values_are_refused_with_the_key(sections, message):
    with pytest.raises(rc.RecipeError, match=None) as err:
        rc.validate(tiny_recipe(**sections))
    assert message in str(err.value)


def test_on_the_command_line_they_exit_2(capsys):
    assert main(["train", "simclr-kmeans", "--set", "train.optimizer.lr=-1"]) == 2
    assert "train.optimizer.lr" in capsys.readouterr().err
    assert main(["train", "simclr-kmeans", "--seeds", "0"]) == 2
    assert "--seeds 0" in capsys.readouterr().err
    assert main(["train", "simclr-kmeans", "--set", "stage.5.train.epochs=1"]) == 2
    assert "stage" in capsys.readouterr().err


def test_more_clusters_than_images_and_zero_epochs_with_losses(tmp_path, capsys):
    assert main(["check", "simclr-kmeans", "--set", "data.subset=20",
                 "--set", "data.n_clusters=50"]) == 2
    assert "50 clusters for 20 images" in capsys.readouterr().err
    assert main(["check", "simclr-kmeans", "--set", "train.epochs=0"]) == 2
    assert "0 epochs train no loss" in capsys.readouterr().err


def test_warnings_for_a_late_loss_and_a_large_subset():
    with pytest.warns(UserWarning, match="losses.instance.start_epoch = 5 is past the last"):
        rc.validate(tiny_recipe(losses={"instance": {"type": "nt_xent", "start_epoch": 5}}))
    import torch

    from corekit.run import DataCache

    with pytest.warns(UserWarning, match="data.subset = 5000 is more than the 1797 images"):
        DataCache(torch.device("cpu"))("digits", 5000)


@pytest.mark.parametrize("value, message", [
    ("yes", "train.compile: expected true or false or 'auto', got str 'yes'"),
    ("aut", "got str 'aut'; did you mean 'auto'?"),
    (3, "train.compile: expected true or false or 'auto', got int 3"),
])
def test_a_value_of_neither_union_type_names_every_choice(value, message):
    """``train.compile`` is ``bool | "auto"``: the error names both, not only the first."""
    with pytest.raises(rc.RecipeError) as err:
        rc.validate(tiny_recipe(train={"compile": value}))
    assert message in str(err.value)
