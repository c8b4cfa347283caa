import tomllib
from pathlib import Path

import pytest

from corekit import recipe as rc
from corekit.cli import main
from corekit.errors import RecipeError
from corekit.testing import tiny_recipe


def finder(tmp_path: Path):
    def find(name: str) -> Path:
        return tmp_path / f"{name}.toml"
    return find


def write(tmp_path, name, text):
    (tmp_path / f"{name}.toml").write_text(text)


def test_unknown_key_names_its_path_and_neighbours():
    with pytest.raises(RecipeError, match=r"train\.epocs: unknown key; did you mean 'epochs'"):
        rc.validate(rc.merge(tiny_recipe(), {"train": {"epocs": 3}}))
    with pytest.raises(RecipeError, match=r"trian: unknown section; did you mean 'train'"):
        rc.validate({**tiny_recipe(), "trian": {}})


def test_types_are_checked_with_paths():
    with pytest.raises(RecipeError, match=r"train\.epochs: expected int"):
        rc.validate(rc.merge(tiny_recipe(), {"train": {"epochs": "five"}}))
    with pytest.raises(RecipeError, match=r"train\.optimizer\.lr: expected float"):
        rc.validate(rc.merge(tiny_recipe(), {"train": {"optimizer": {"lr": True}}}))


def test_extends_and_presets(tmp_path):
    write(tmp_path, "base", 'name = "base"\n[train]\nepochs = 7\nbatch_size = 32\n'
          '[losses.a]\ntype = "nt_xent"\n[presets.mnist]\ntrain = { epochs = 2 }\n')
    write(tmp_path, "child", 'extends = "base"\n[train]\nbatch_size = 64\n')
    recipe = rc.resolve("child", finder(tmp_path))
    assert recipe.name == "child"
    assert recipe.stages[0].train.epochs == 7 and recipe.stages[0].train.batch_size == 64
    mnist = rc.resolve("child", finder(tmp_path), data="mnist:/some/dir")
    assert mnist.stages[0].train.epochs == 2
    assert mnist.stages[0].data.name == "mnist:/some/dir"


def test_extends_cycle_is_an_error(tmp_path):
    write(tmp_path, "a", 'extends = "b"\n')
    write(tmp_path, "b", 'extends = "a"\n')
    with pytest.raises(RecipeError, match="extends itself"):
        rc.resolve("a", finder(tmp_path))


def test_overrides_are_typed_and_reach_stages(tmp_path):
    write(tmp_path, "two", '[losses.a]\ntype = "nt_xent"\n[train]\nepochs = 3\n'
          '[[stage]]\nname = "pre"\n[[stage]]\nname = "post"\ntrain = { epochs = 1 }\n')
    recipe = rc.resolve("two", finder(tmp_path), overrides=["train.epochs=5", "stage.1.fresh=true"])
    assert [s.name for s in recipe.stages] == ["pre", "post"]
    assert recipe.stages[0].train.epochs == 5 and recipe.stages[1].train.epochs == 1
    assert recipe.stages[1].fresh is True
    with pytest.raises(RecipeError, match="train.epochs: expected int"):
        rc.resolve("two", finder(tmp_path), overrides=["train.epochs=lots"])
    with pytest.raises(RecipeError, match="no stage '7'"):
        rc.resolve("two", finder(tmp_path), overrides=["stage.7.fresh=true"])
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        rc.parse_override("train.epochs")


def test_a_stage_override_wins_over_the_presets_change_of_that_stage(tmp_path):
    write(tmp_path, "two", '[losses.a]\ntype = "nt_xent"\n'
          '[[stage]]\nname = "pre"\n[[stage]]\ntrain = { epochs = 1 }\n'
          '[presets.digits.stages.pre.train]\nepochs = 2\n'
          '[presets.digits.stages.stage2.train]\nepochs = 3\n')
    recipe = rc.resolve("two", finder(tmp_path), data="digits",
                        overrides=["stage.0.train.epochs=7", "stage.1.train.epochs=8"])
    assert [s.train.epochs for s in recipe.stages] == [7, 8]
    preset_only = rc.resolve("two", finder(tmp_path), data="digits")
    assert [s.train.epochs for s in preset_only.stages] == [2, 3]


def test_bad_toml_and_missing_file(tmp_path):
    write(tmp_path, "bad", "[train\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        rc.resolve("bad", finder(tmp_path))
    with pytest.raises(RecipeError, match="does not exist"):
        rc.resolve("nothere", finder(tmp_path))


def test_component_shorthand_and_to_toml_round_trip():
    raw = rc.merge(tiny_recipe(), {"clusterer": {"type": "spherical_kmeans", "n_init": 2}})
    recipe = rc.validate(raw)
    assert recipe.stages[0].clusterer.options == {"n_init": 2}
    again = rc.validate(tomllib.loads(rc.to_toml(recipe.raw)))
    assert again.stages[0] == recipe.stages[0]


def test_show_cli_and_unknown_recipe(capsys):
    assert main(["show", "simclr-kmeans", "--set", "train.epochs=2"]) == 0
    assert "epochs = 2" in capsys.readouterr().out
    assert main(["show", "simclr-kmean"]) == 2
    assert "did you mean 'simclr-kmeans'" in capsys.readouterr().err


def test_dotted_option_keys_survive_the_run_directory_toml():
    raw = tiny_recipe(train={"optimizer": {"lr_mult": {"heads.proj": 10.0}}},
                      stage=[{"name": "a", "train": {"optimizer": {"lr_mult": {"heads.x": 2.0}}}}])
    again = tomllib.loads(rc.to_toml(raw))
    assert again["train"]["optimizer"]["lr_mult"] == {"heads.proj": 10.0}
    assert again["stage"][0]["train"]["optimizer"]["lr_mult"] == {"heads.x": 2.0}


def test_child_presets_merge_over_the_parents(tmp_path):
    write(tmp_path, "base", '[losses.a]\ntype = "nt_xent"\n'
          '[presets.mnist]\ntrain = { epochs = 2 }\n[presets.digits]\ntrain = { epochs = 3 }\n')
    write(tmp_path, "child", 'extends = "base"\n[presets.digits]\ntrain = { batch_size = 8 }\n')
    assert rc.resolve("child", finder(tmp_path), data="mnist").stages[0].train.epochs == 2
    digits = rc.resolve("child", finder(tmp_path), data="digits").stages[0].train
    assert (digits.epochs, digits.batch_size) == (3, 8)


def test_fixed_choice_options_are_literals_checked_at_validation():
    """Core v2 item 7: a typo in a fixed-choice option fails validation with a suggestion
    (``model.target.schedule = "cosin"`` used to mean constant, silently)."""

    cases = {("model", "target", "schedule"): ("cosin", "did you mean 'cosine'"),
             ("train", "precision"): ("fp33", "did you mean 'fp32'"),
             ("data", "source"): ("refrence", "did you mean 'reference'")}
    for keys, (value, hint) in cases.items():
        raw = tiny_recipe(model={"target": {"parts": ["proj"]}})
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        with pytest.raises(RecipeError) as err:
            rc.validate(raw)
        assert ".".join(keys) in str(err.value) and hint in str(err.value), err.value
    ok = rc.validate(tiny_recipe(model={"target": {"parts": ["proj"], "schedule": "cosine"}}))
    assert ok.stages[0].model.target.schedule == "cosine"


def test_registry_kind_typos_fail_at_compose_with_a_suggestion():
    """Schedules, optimizers and samplers are registry kinds: a typo is an unknown name."""
    import torch

    from corekit.composer import CompositionError, compose
    from corekit.plugins import load_plugins
    from corekit.runner import DataCache

    plugins = load_plugins()
    raw = tiny_recipe(train={"schedule": {"type": "cosin"}, "optimizer": {"type": "adamm"},
                             "sampler": "shufle"})
    stage = rc.validate(raw).stages[0]
    cache = DataCache(torch.device("cpu"))
    with pytest.raises(CompositionError) as err:
        compose(plugins, stage, lambda n: cache(n, 256), torch.device("cpu"))
    text = str(err.value)
    assert "train.schedule.type: unknown schedule 'cosin'; did you mean 'cosine'" in text
    assert "train.optimizer.type: unknown optimizer 'adamm'; did you mean 'adam'" in text
    assert "train.sampler.type: unknown sampler 'shufle'; did you mean 'shuffle'" in text
    bad_option = tiny_recipe(train={"schedule": {"type": "cosine", "warmup": 2}})
    with pytest.raises(CompositionError, match="train.schedule.warmup: unknown option of "
                                               "schedule 'cosine'.*did you mean 'warmup_epochs'"):
        compose(plugins, rc.validate(bad_option).stages[0], lambda n: cache(n, 256),
                torch.device("cpu"))


def test_a_child_recipe_means_what_it_says_under_a_parent_preset(tmp_path):
    """The parent is resolved for the data set first (its preset included), then the child's
    own tables, then the child's preset: a child's ``train.epochs = 3`` trains 3 epochs under
    ``--data digits`` although the parent's ``digits`` preset sets 40."""
    (tmp_path / "parent.toml").write_text(
        'name = "parent"\n[train]\nepochs = 1000\nbatch_size = 512\n'
        '[presets.digits.train]\nepochs = 40\nbatch_size = 128\n'
        '[presets.mnist.train]\nepochs = 12\n')
    (tmp_path / "child.toml").write_text(
        f'name = "child"\nextends = "{tmp_path / "parent.toml"}"\n[train]\nepochs = 3\n'
        '[presets.mnist.train]\nbatch_size = 64\n')
    digits = rc.resolve(str(tmp_path / "child.toml"), finder(tmp_path), "digits")
    assert digits.stages[0].train.epochs == 3 and digits.stages[0].train.batch_size == 128
    assert digits.raw["preset"] == "digits"
    mnist = rc.resolve(str(tmp_path / "child.toml"), finder(tmp_path), "mnist")
    assert (mnist.stages[0].train.epochs, mnist.stages[0].train.batch_size) == (3, 64)
    assert sorted(mnist.raw["presets"]) == ["digits", "mnist"]  # listed through the chain


def test_the_set_a_stage_trains_on():
    assert rc.Data(name="a").trained_on() == "a"
    assert rc.Data(name="a", reference="b").trained_on() == "a"
    assert rc.Data(name="a", reference="b", source="reference").trained_on() == "b"
    assert rc.Data(name="a", source="reference").trained_on() == "a"  # no reference given


def test_unnamed_stages_are_named_by_position_before_they_are_built(monkeypatch):
    """Several ``[[stage]]`` tables without a name (or named ``main``) are ``stage1``,
    ``stage2``, ...; one stage is ``main``. ``validate`` sets the name before it builds the
    stage and never assigns to a built one (so ``Stage`` can become frozen)."""
    built = rc.validate(tiny_recipe(stage=[{}, {"name": "tune"}, {"name": "main"}]))
    assert [s.name for s in built.stages] == ["stage1", "tune", "stage3"]
    assert [s.name for s in rc.validate(tiny_recipe()).stages] == ["main"]

    from corekit.recipe import validation

    as_built = []

    def build(cls, raw, path):
        obj = rc.build(cls, raw, path)
        as_built.append((obj, repr(obj)))
        return obj

    monkeypatch.setattr(validation, "build", build)
    assert [s.name for s in rc.validate(tiny_recipe(stage=[{}, {}])).stages] == ["stage1",
                                                                               "stage2"]
    assert as_built and all(repr(obj) == seen for obj, seen in as_built)


def test_the_recipe_package_imports_no_torch_and_no_budget():
    """``deepclust show`` stays cheap, and the recipe <-> budget import loop is gone:
    ``parse_budget`` lives in ``corekit.recipe.durations``; ``corekit.budget`` reads it there."""
    import subprocess
    import sys

    code = ("import sys, corekit.recipe\n"
            "print(sorted(m for m in sys.modules if m in ('torch', 'corekit.budget')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    from corekit import budget

    assert budget.parse_budget is rc.parse_budget
