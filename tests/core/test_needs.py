"""Core v2 item 1-2: needs are strict and complete, outputs are typed, every stage composes
before the first one trains."""

import json

import pytest
import torch

from corekit import recipe as rc
from corekit.cli import main
from corekit.composer import CompositionError, compose
from corekit.errors import RecipeError
from corekit.needs import ACCEPTS, Need
from corekit.runner import DataCache, check_recipe, train
from corekit.testing import plugin_set, tiny_recipe
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")


def problems(raw) -> list[str]:
    recipe = rc.validate(raw)
    with pytest.raises(CompositionError) as err:
        check_recipe(recipe, PLUGINS, DataCache(torch.device("cpu")))
    return err.value.problems


def test_unknown_need_kind_is_an_error():
    class Typo:
        def needs(self):
            return [Need("bnak")]  # a typo in a plugin's declared need kind

    loss = Typo()
    stage = rc.validate(tiny_recipe(losses={"a": {"type": "toy.encoder_agreement",
                                                  "encoder": "backbone"}})).stages[0]
    cache = DataCache(torch.device("cpu"))
    from corekit.composer import Problems, check_needs, declared_needs
    from corekit.needs import NeedContext

    c = compose(PLUGINS, stage, lambda n: cache(n, 256), torch.device("cpu"))
    found = Problems()
    ctx = NeedContext(stage, c.model.online, {"online": c.model.online}, c.state, {}, True)
    check_needs(PLUGINS, declared_needs({"loss 'a'": loss}, stage, PLUGINS), ctx, found)
    assert any("unknown kind 'bnak'" in p and "did you mean 'bank'" not in p
               for p in found.items), found.items
    assert any("register_need_kinds" in p for p in found.items)


def test_unknown_branch_is_an_error():
    found = problems(tiny_recipe(clusterer={"features": "teacher:proj"}))
    assert any("branch 'teacher'" in p and "['online']" in p for p in found), found
    found = problems(tiny_recipe(clusterer={"features": "target:proj"}))
    assert any("needs a target branch: add [model.target]" in p for p in found), found


def test_every_unmet_need_of_every_stage_in_one_message():
    raw = tiny_recipe(stage=[
        {"name": "one", "losses": {"instance": {"type": "nt_xent", "head": "prj"}}},
        {"name": "two", "augment": {"views": 1},
         "losses": {"psl": {"type": "toy.bank_pull"},
                    "p": {"type": "toy.probs_reader", "head": "proj"}}},
    ])
    raw["data"].pop("subset")
    found = problems(raw)
    text = "\n".join(found)
    assert "stage 'one': loss 'instance' (core.nt_xent) reads online:prj" in text
    assert "did you mean 'proj'" in text
    assert "stage 'two'" in text and "set augment.views = 2" in text  # nt_xent, inherited
    assert "add [state.bank_a] with type = 'memory_bank'" in text
    assert "add [state.bank_b] with type = 'memory_bank'" in text
    assert "produces embedding" in text and "reads online:proj as probs" in text
    assert "needs the toy flag" in text  # a need kind the toy plugin registered
    assert len(found) == 6, found


def test_output_kind_mismatch_names_both_ends():
    raw = tiny_recipe(model={"heads": {"cluster": {"type": "cluster_head", "input": "backbone"}}},
                      losses={"instance": {"type": "nt_xent", "head": "cluster"}})
    (found,) = problems(raw)
    assert "loss 'instance' (core.nt_xent) reads online:cluster as embedding" in found
    assert "head 'cluster', core.cluster_head" in found and "produces probs" in found
    assert ACCEPTS["embedding"] == {"embedding", "unit"}


def test_typo_in_second_stage_stops_before_the_first_trains(tmp_path):
    raw = tiny_recipe(stage=[{"name": "first"},
                             {"name": "second", "losses": {"instance": {"temprature": 0.1}}}])
    with pytest.raises(RecipeError, match="stage 'second': losses.instance.temprature"):
        train(rc.validate(raw), tmp_path / "run", PLUGINS, log=lambda _: None, progress=False)
    assert not (tmp_path / "run").exists()  # nothing trained, no run directory


def test_check_command_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(rc.to_toml(tiny_recipe()))
    assert main(["check", str(good)]) == 0
    assert "ok: recipe 'tiny' composes (1 stage(s))" in capsys.readouterr().out
    bad = tiny_recipe(stage=[{"name": "a"},
                             {"name": "b", "train": {"schedule": {"type": "cosin"}},
                              "losses": {"instance": {"head": "nope"}}}])
    path = tmp_path / "bad.toml"
    path.write_text(rc.to_toml(bad))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err
    assert "stage 'b': train.schedule.type: unknown schedule 'cosin'" in err
    assert "did you mean 'cosine'" in err and "no part 'nope'" in err
    assert not list(tmp_path.glob("runs*"))
    json.dumps(bad)  # the recipe round-trips (no run directory was needed)
