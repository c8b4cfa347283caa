"""Bad input ends in exit 2 with the key and the valid range, never a traceback; nonsense is
refused at validation (issue: reliability). A field's range lives beside it in
``corekit.recipe.schema`` (``ranged``); ranges by option name live in
``corekit.recipe.option_rules``."""

import types
import typing

import attrs
import pytest

from corekit import recipe as rc
from corekit.cli import main
from corekit.recipe import schema
from corekit.recipe.checks import Range, field_check
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
    ({"train": {"optimizer": {"lr_mult": {"heads.proj": 0}}}},
     "train.optimizer.lr_mult.heads.proj: 0.0 is out of range; expected 0 < value <= 1e+09"),
    ({"model": {"target": {"momentum": 1.5}}}, "model.target.momentum: 1.5 is out of range"),
    ({"train": {"seed": -1}}, "train.seed: -1 is out of range; expected 0 <= value <= 4294967295"),
    ({"train": {"budget": -5}}, "train.budget: -5.0 is out of range; expected 0 < value"),
]

OPTIONS_REFUSED = [
    # temperatures: > 0, under any name a temperature goes by
    ({"losses": {"instance": {"temperature": -0.5}}},
     "losses.instance.temperature: -0.5 is out of range; expected 0 < value <= 1e+09"),
    ({"losses": {"instance": {"temperature": 0}}}, "losses.instance.temperature: 0 is out of"),
    ({"losses": {"instance": {"tau": 0.0}}}, "losses.instance.tau: 0.0 is out of range"),
    ({"losses": {"instance": {"tau_xb": -1}}}, "losses.instance.tau_xb: -1 is out of range"),
    ({"model": {"heads": {"proj": {"cluster_temperature": -2.0}}}},
     "model.heads.proj.cluster_temperature: -2.0 is out of range; expected 0 < value"),
    # probabilities: in [0, 1]
    ({"augment": {"flip_p": 1.5}},
     "augment.flip_p: 1.5 is out of range; expected 0 <= value <= 1"),
    ({"augment": {"jitter_p": -0.1}}, "augment.jitter_p: -0.1 is out of range"),
    ({"augment": {"gray_p": 2}}, "augment.gray_p: 2 is out of range"),
    ({"clusterer": {"p": 1.01}}, "clusterer.p: 1.01 is out of range"),
    # angles: 0 <= x <= 180, drawn from U(-x, x)
    ({"augment": {"rotate": 270.0}},
     "augment.rotate: 270.0 is out of range; expected 0 <= value <= 180"),
    ({"augment": {"shear": -181}}, "augment.shear: -181 is out of range"),
    # crop_scale: [lo, hi], 0 < lo <= hi <= 1
    ({"augment": {"crop_scale": [0.5, 0.2]}},
     "augment.crop_scale: [0.5, 0.2] is out of range; expected [lo, hi] with 0 < lo <= hi <= 1"),
    ({"augment": {"crop_scale": [0.0, 1.0]}}, "augment.crop_scale: [0.0, 1.0] is out of range"),
    ({"augment": {"crop_scale": [0.3, 1.5]}}, "augment.crop_scale: [0.3, 1.5] is out of range"),
    ({"augment": {"crop_scale": [0.3]}}, "augment.crop_scale: [0.3] is out of range"),
    ({"augment": {"crop_scale": 0.3}}, "augment.crop_scale: 0.3 is out of range"),
    # widths of encoders and heads: >= 1
    ({"model": {"heads": {"proj": {"out_dim": 0}}}},
     "model.heads.proj.out_dim: 0 is out of range; expected 1 <= value <= 1e+09"),
    ({"model": {"heads": {"proj": {"hidden": -4}}}}, "model.heads.proj.hidden: -4 is out of"),
    ({"model": {"heads": {"proj": {"hidden_dim": 0}}}}, "model.heads.proj.hidden_dim: 0 is"),
    ({"model": {"backbone": {"width": 0}}}, "model.backbone.width: 0 is out of range"),
    ({"model": {"encoders": {"bg": {"type": "mlp", "dim": 0}}}},
     "model.encoders.bg.dim: 0 is out of range"),
    # in a [[stage]] table and in a preset too
    ({"stage": [{"name": "a"}, {"name": "b", "augment": {"flip_p": 7}}]},
     "stage[1].augment.flip_p: 7 is out of range"),
    ({"presets": {"mnist": {"losses": {"instance": {"temperature": -1}}}}},
     "presets.mnist.losses.instance.temperature: -1 is out of range"),
]


@pytest.mark.parametrize("sections, message", REFUSED, ids=[m.split(":")[0] for _, m in REFUSED])
def test_out_of_range_values_are_refused_with_the_key(sections, message):
    with pytest.raises(rc.RecipeError, match=None) as err:
        rc.validate(tiny_recipe(**sections))
    assert message in str(err.value)


@pytest.mark.parametrize("sections, message", OPTIONS_REFUSED,
                         ids=[m.split(":")[0] for _, m in OPTIONS_REFUSED])
def test_option_rules_refuse_by_name_with_the_key(sections, message):
    with pytest.raises(rc.RecipeError) as err:
        rc.validate(tiny_recipe(**sections))
    assert message in str(err.value)


def test_option_rules_keep_what_is_in_range_and_their_scope():
    """Edge values pass; a ``dim`` of a loss is no width (it may be a tensor axis)."""
    stage = rc.validate(tiny_recipe(
        augment={"flip_p": 0.0, "gray_p": 1.0, "rotate": 0.0, "shear": 180,
                 "crop_scale": [1.0, 1.0]},
        losses={"instance": {"temperature": 1e-3, "dim": -1}},
        model={"heads": {"proj": {"out_dim": 1}}})).stages[0]
    assert stage.augment.options["crop_scale"] == [1.0, 1.0]
    assert stage.losses["instance"].options == {"head": "proj", "temperature": 1e-3, "dim": -1}


def _numeric(tp: typing.Any) -> bool:
    """Whether annotation ``tp`` holds an int or a float anywhere (``int | None``,
    ``list[float]``, ``dict[str, float]``, ``str | float``); bool is no number here."""
    if tp in (int, float):
        return True
    return any(_numeric(arg) for arg in typing.get_args(tp) if arg is not type(None))


def test_every_numeric_field_of_the_schema_has_a_range():
    classes = [c for c in vars(schema).values() if isinstance(c, type) and attrs.has(c)]
    assert rc.Train in classes and rc.Optimizer in classes
    numeric = [(cls.__name__, f.name) for cls in classes
               for f in attrs.fields(cls) if _numeric(typing.get_type_hints(cls)[f.name])]
    assert ("Optimizer", "lr_mult") in numeric and ("Train", "budget") in numeric
    missing = [f"{c}.{n}" for c, n in numeric
               if not isinstance(field_check(attrs.fields_dict(getattr(schema, c))[n]), Range)]
    assert not missing, f"numeric fields without a range: {missing}"


def test_the_numeric_test_sees_numbers_inside_containers():
    assert _numeric(int | None) and _numeric(list[float]) and _numeric(dict[str, float])
    assert _numeric(str | float | None) and not _numeric(bool) and not _numeric(list[str])
    assert not _numeric(types.NoneType)


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

    from corekit.runner import DataCache

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
