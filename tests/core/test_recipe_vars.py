"""``[vars]``: a value stated once and used as ``"${NAME}"`` anywhere in a recipe (issue 28,
part 4). Substituted after extends, presets and ``--set`` are merged and before validation;
the resolved raw recipe (a run folder's ``recipe.toml``) validates to the same recipe again."""

import tomllib
from pathlib import Path

import pytest

from corekit import recipe as rc
from corekit.errors import RecipeError
from corekit.testing import tiny_recipe

WARM = "${warmup}"


def finder(tmp_path: Path):
    return lambda name: tmp_path / f"{name}.toml"


def test_a_var_is_used_at_any_depth_with_its_type_kept():
    raw = tiny_recipe(
        vars={"warmup": 3, "views": [0, 1], "proj": {"type": "mlp_projector", "out_dim": 8},
              "head": "proj"},
        train={"epochs": 6, "schedule": {"type": "cosine", "warmup_epochs": WARM}},
        losses={"instance": {"start_epoch": WARM, "head": "${head}"}},
        state={"keys": {"type": "queue", "size": 64, "views": "${views}"}},
        model={"heads": {"other": "${proj}"}},
        stage=[{"name": "a"}, {"name": "b", "train": {"freeze": ["${head}"]}}])
    recipe = rc.validate(raw)
    for stage in recipe.stages:
        assert stage.train.schedule.options["warmup_epochs"] == 3
        assert stage.losses["instance"].start_epoch == 3
        assert stage.losses["instance"].options["head"] == "proj"
        assert stage.state["keys"].options["views"] == [0, 1]
        assert stage.model.heads["other"].options == {"out_dim": 8}
    assert recipe.stages[1].train.freeze == ["proj"]
    assert "${" not in rc.to_toml({k: v for k, v in recipe.raw.items() if k != "vars"})


def test_set_vars_changes_every_use_and_presets_set_their_own(tmp_path):
    (tmp_path / "r.toml").write_text(
        '[vars]\nwarmup = 4\nlong = 30\n[losses.a]\ntype = "nt_xent"\nstart_epoch = "${warmup}"\n'
        '[train]\nepochs = 20\nschedule = { type = "cosine", warmup_epochs = "${warmup}" }\n'
        '[[stage]]\nname = "pre"\n[[stage]]\nname = "post"\n'
        '[stages.post.losses.a]\nweight = 0.5\n'
        '[presets.mnist]\nvars = { warmup = 7 }\n'
        '[presets.digits.stages.post.train]\nepochs = "${long}"\n')

    def uses(recipe: rc.Recipe) -> set:
        return {v for s in recipe.stages
                for v in (s.losses["a"].start_epoch, s.train.schedule.options["warmup_epochs"])}

    assert uses(rc.resolve("r", finder(tmp_path))) == {4}
    assert uses(rc.resolve("r", finder(tmp_path), overrides=["vars.warmup=9"])) == {9}
    assert uses(rc.resolve("r", finder(tmp_path), data="mnist")) == {7}
    assert uses(rc.resolve("r", finder(tmp_path), data="mnist",
                           overrides=["vars.warmup=2"])) == {2}
    digits = rc.resolve("r", finder(tmp_path), data="digits")  # a use inside a preset
    assert [s.train.epochs for s in digits.stages] == [20, 30]


def test_a_child_recipe_changes_its_parents_var(tmp_path):
    (tmp_path / "base.toml").write_text(
        '[vars]\nn = 3\n[losses.a]\ntype = "nt_xent"\nstart_epoch = "${n}"\n'
        '[train]\nepochs = 10\n')
    (tmp_path / "child.toml").write_text('extends = "base"\n[vars]\nn = 5\n')
    assert rc.resolve("child", finder(tmp_path)).stages[0].losses["a"].start_epoch == 5


@pytest.mark.parametrize("sections, message", [
    ({"vars": {"warmup": 2}, "losses": {"instance": {"start_epoch": "${warmpu}"}}},
     "losses.instance.start_epoch: '${warmpu}' names no entry of [vars]; "
     "did you mean 'warmup'?"),
    ({"train": {"epochs": "${epochs}"}},
     "train.epochs: '${epochs}' names no entry of [vars]; the recipe has no [vars] table"),
    ({"vars": {"k": 1}, "stage": [{"name": "a"}, {"name": "b", "augment": {"size": "${kk}"}}]},
     "stage[1].augment.size: '${kk}' names no entry of [vars]; did you mean 'k'?"),
    ({"vars": {"k": 1}, "augment": {"type": ["simclr", "${typ}"]}},
     "augment.type[1]: '${typ}' names no entry of [vars]"),
    ({"vars": {"k": 1}, "presets": {"mnist": {"train": {"epochs": "${j}"}}}},
     "presets.mnist.train.epochs: '${j}' names no entry of [vars]"),
    ({"vars": {"a": 1, "b": "${a}"}}, "vars.b: '${a}' uses a var inside [vars]"),
    ({"vars": 3}, "vars: expected a table of values"),
    ({"vars": {"n": -2}, "train": {"epochs": "${n}"}}, "train.epochs: -2 is out of range"),
    ({"vars": {"n": "five"}, "train": {"epochs": "${n}"}}, "train.epochs: expected int"),
])
def test_bad_uses_name_the_key_path(sections, message):
    with pytest.raises(RecipeError) as err:
        rc.validate(tiny_recipe(**sections))
    assert message in str(err.value)


def test_a_string_that_is_not_exactly_a_use_is_kept():
    raw = tiny_recipe(vars={"x": 1}, losses={"instance": {"note": "cost ${x} each", "d": "$x"}})
    options = rc.validate(raw).stages[0].losses["instance"].options
    assert (options["note"], options["d"]) == ("cost ${x} each", "$x")


def test_vars_is_a_meta_key_not_a_section():
    assert "vars" in rc.META_KEYS
    assert rc.validate(tiny_recipe(vars={"unused": 1})).stages[0] == rc.validate(
        tiny_recipe()).stages[0]


def test_the_resolved_recipe_round_trips_through_the_run_folder_toml(tmp_path):
    raw = tiny_recipe(vars={"w": 1, "heads": ["proj"]},
                      losses={"instance": {"start_epoch": "${w}"}}, train={"epochs": 3},
                      model={"target": {"parts": "${heads}"}},
                      presets={"mnist": {"vars": {"w": 0, "e": 4},  # e: a var of this preset alone
                                         "train": {"epochs": "${e}"}}})
    recipe = rc.validate(raw)
    assert recipe.raw["vars"] == {"w": 1, "heads": ["proj"]}  # kept, as a record
    assert recipe.raw["losses"]["instance"]["start_epoch"] == 1  # used
    path = tmp_path / "recipe.toml"
    path.write_text(rc.to_toml(recipe.raw))
    again = rc.validate(rc.load_toml(path))
    assert again.stages == recipe.stages and again.raw == recipe.raw


DIGPRO_WARM_UP = {None: 50, "cifar10": 50, "rsod": 50, "ucmerced": 200, "siri_whu": 200,
                  "imagenet10": 50, "imagenet_dogs": 50, "tiny_imagenet": 50, "digits": 5,
                  "mnist": 2}
"""The warm-up of each DigPro preset before ``[vars]`` (spec §5; ProPos's CPU presets)."""


@pytest.fixture(scope="module")
def plugins():
    from corekit.plugins import load_plugins

    return load_plugins()


@pytest.mark.parametrize("data", list(DIGPRO_WARM_UP))
def test_digpro_states_its_warm_up_once_with_the_same_values(plugins, data):
    recipe = rc.resolve("digpro", plugins.find_recipe, data)
    (stage,) = recipe.stages
    warm_up = DIGPRO_WARM_UP[data]
    assert stage.train.schedule.options["warmup_epochs"] == warm_up
    assert stage.losses["psl"].start_epoch == warm_up
    assert stage.model.heads["noisy"].options["start_epoch"] == warm_up
    assert sorted(recipe.raw["presets"]) == sorted(k for k in DIGPRO_WARM_UP if k)
    again = rc.validate(tomllib.loads(rc.to_toml(recipe.raw)))
    assert again.stages == recipe.stages
    moved = rc.resolve("digpro", plugins.find_recipe, data, ["vars.warmup=3"]).stages[0]
    assert (moved.train.schedule.options["warmup_epochs"], moved.losses["psl"].start_epoch,
            moved.model.heads["noisy"].options["start_epoch"]) == (3, 3, 3)
