"""Core v2 item 6: each stage saves its outputs; later stages start from them by name;
``--stage`` reruns one stage alone."""

import json
import types

import pytest
import torch

from corekit import hookimpl
from corekit import recipe as rc
from corekit.cli import main
from corekit.composer import compose
from corekit.handoff import StageOutputs
from corekit.runner import DataCache
from corekit.state import PseudoLabels
from corekit.testing import plugin_set, run_tiny, tiny_recipe
from tests.core import toy_plugin


class Votes(PseudoLabels):
    """A state type of its own whose tensors are those of ``pseudo_labels``."""


@hookimpl
def register_state_types(register):
    register("votes", Votes)


votes_plugin = types.ModuleType("votes_plugin")
votes_plugin.register_state_types = register_state_types
PLUGINS = plugin_set(toy_plugin, votes_plugin, name="toy")


def two_stage(**tune):
    second = {"name": "tune",
              "model": {"heads": {"cluster": {"type": "cluster_head", "input": "backbone"}}},
              "losses": {"entropy": {"type": "batch_marginal_entropy", "head": "cluster"}},
              "eval": {"assign": "head:cluster"}}
    return tiny_recipe(stage=[{"name": "pre"}, rc.merge(second, tune)])


def compose_stage(raw, index, previous):
    stage = rc.validate(raw).stages[index]
    cache = DataCache(torch.device("cpu"))
    earlier = {previous.stage: previous} if previous else {}
    return compose(PLUGINS, stage, lambda n: cache(n, 256), torch.device("cpu"), previous, 3,
                   earlier)


def test_each_stage_writes_its_outputs(tmp_path):
    run_tiny(two_stage(), tmp_path, PLUGINS)
    for name in ("pre", "tune"):
        folder = tmp_path / "stages" / name
        assert {p.name for p in folder.iterdir()} >= {"checkpoint.pt", "outputs.pt",
                                                       "final.json"}
    pre = StageOutputs.load(tmp_path / "stages" / "pre")
    tune = StageOutputs.load(tmp_path / "stages" / "tune")
    assert set(pre.parts) == {"backbone", "proj"} and "cluster" in tune.parts
    assert pre.epochs == 1 and set(tune.state) == {"pseudo"}


def test_stage_option_reruns_the_second_stage_alone(tmp_path, capsys):
    recipe = tmp_path / "two.toml"
    recipe.write_text(rc.to_toml(two_stage()))
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--no-progress"]) == 0
    pre_bytes = (out / "stages" / "pre" / "outputs.pt").read_bytes()
    first = json.loads((out / "final.json").read_text())
    (out / "final.json").unlink()
    capsys.readouterr()
    assert main(["train", str(recipe), "--out", str(out), "--stage", "tune",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "stage pre" not in printed and "stage tune" in printed
    assert (out / "stages" / "pre" / "outputs.pt").read_bytes() == pre_bytes  # untouched
    again = json.loads((out / "final.json").read_text())
    for key in ("nmi", "acc", "ari"):  # same seed, same start: the saved stage-1 weights
        assert again[key] == first[key]
    tune_bytes = (out / "stages" / "tune" / "outputs.pt").read_bytes()
    assert main(["train", str(recipe), "--out", str(out), "--stage", "pre",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "stage pre" in printed and "stage tune: stale" in printed
    assert "stage tune:" not in printed.replace("stage tune: stale", "")  # not retrained
    assert (out / "stages" / "tune" / "outputs.pt").read_bytes() == tune_bytes


def test_stage_option_needs_the_earlier_outputs(tmp_path, capsys):
    recipe = tmp_path / "two.toml"
    recipe.write_text(rc.to_toml(two_stage()))
    assert main(["train", str(recipe), "--out", str(tmp_path / "none"), "--stage", "tune"]) == 2
    assert "stage 'pre' before it has no saved outputs" in capsys.readouterr().err
    assert main(["train", str(recipe), "--out", str(tmp_path / "x"), "--stage", "tun"]) == 2
    assert "did you mean 'tune'" in capsys.readouterr().err


def test_carry_fresh_and_init_from(tmp_path):
    run_tiny(two_stage(), tmp_path, PLUGINS)
    pre = StageOutputs.load(tmp_path / "stages" / "pre")
    same = compose_stage(two_stage(), 1, pre).model.online
    assert all(torch.equal(v, pre.parts["proj"][k])
               for k, v in same.part("proj").state_dict().items())
    fresh = compose_stage(two_stage(fresh=["proj"]), 1, pre).model.online
    assert torch.equal(fresh.part("backbone").state_dict()["layers.1.weight"],
                       pre.parts["backbone"]["layers.1.weight"])
    assert not torch.equal(fresh.part("proj").state_dict()["0.weight"],
                           pre.parts["proj"]["0.weight"])
    carry = compose_stage(two_stage(carry=["proj"]), 1, pre).model.online
    assert not torch.equal(carry.part("backbone").state_dict()["layers.1.weight"],
                           pre.parts["backbone"]["layers.1.weight"])
    raw = two_stage(fresh=True, model={"encoders": {"bg": {
        "type": "mlp", "hidden": 64, "out_dim": 32, "init_from": "pre:backbone"}}},
        train={"freeze": ["bg"]})
    bg = compose_stage(raw, 1, pre).model.online.part("bg")
    assert all(torch.equal(v, pre.parts["backbone"][k]) for k, v in bg.state_dict().items())
    bad = two_stage(model={"encoders": {"bg": {"type": "mlp", "init_from": "pree:backbone"}}})
    with pytest.raises(rc.RecipeError, match="init_from: no earlier stage 'pree' to start "
                                             "from; did you mean 'pre'"):
        compose_stage(bad, 1, pre)


def test_drop_and_a_preset_that_changes_one_stage():
    raw = two_stage(drop=["losses.instance", "model.heads.proj"])
    raw["presets"] = {"digits": {"stages": {"tune": {"train": {"epochs": 3}}}}}
    recipe = rc.validate(rc.select_data(raw, "digits"))
    pre, tune = recipe.stages
    assert set(tune.losses) == {"entropy"} and set(tune.model.heads) == {"cluster"}
    assert set(pre.losses) == {"instance"}
    assert (pre.train.epochs, tune.train.epochs) == (1, 3)
    with pytest.raises(rc.RecipeError, match="drop: 'losses.nope' is not in"):
        rc.validate(two_stage(drop=["losses.nope"]))
    raw["presets"]["digits"]["stages"] = {"tun": {}}
    with pytest.raises(rc.RecipeError, match="stages.tun: no stage is called 'tun'"):
        rc.validate(rc.select_data(raw, "digits"))


def stage_with_state(state, subset=256):
    """``pre`` (an E-step, so a ``pseudo`` state) then ``tune`` on ``subset`` images with the
    ``[state]`` tables ``state``."""
    return tiny_recipe(stage=[{"name": "pre"},
                              {"name": "tune", "data": {"subset": subset}, "state": state}])


def check_fails(tmp_path, capsys, raw) -> str:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(rc.to_toml(raw))
    assert main(["check", str(recipe)]) == 2
    return capsys.readouterr().err


def test_state_init_from_of_another_type_is_exit_2(tmp_path, capsys):
    """Issue 30 item 6: a memory bank started from a label vector names both types and their
    shapes (it was a traceback)."""
    err = check_fails(tmp_path, capsys, stage_with_state(
        {"bank": {"type": "memory_bank", "source": "online:backbone",
                  "init_from": "pre:pseudo"}}))
    assert "state.bank.init_from: 'pre:pseudo' is a pseudo_labels state (labels (256,)" in err
    assert "but this stage's is a memory_bank state (features (256, 32))" in err
    assert "Traceback" not in err


def test_state_init_from_of_another_type_with_the_same_tensors():
    """The type is checked, not only the tensors: a ``votes`` state is not started from a
    ``pseudo_labels`` one although their tensors have the same names and shapes."""
    pre = compose_stage(stage_with_state({}), 0, None).outputs()
    assert pre.state_types == {"pseudo": "pseudo_labels"}
    raw = stage_with_state({"votes": {"type": "votes", "init_from": "pre:pseudo"}})
    with pytest.raises(rc.RecipeError, match=r"'pre:pseudo' is a pseudo_labels state \(labels "
                                             r"\(256,\).* but this stage's is a votes state"):
        compose_stage(raw, 1, pre)
    raw = stage_with_state({"votes": {"type": "pseudo_labels", "init_from": "pre:pseudo"}})
    assert compose_stage(raw, 1, pre).state["votes"].labels.shape == (256,)


def test_state_init_from_of_another_image_count_is_exit_2(tmp_path, capsys):
    """Issue 30 item 6: a 256-image label vector does not load into a 128-image stage (it
    loaded silently)."""
    err = check_fails(tmp_path, capsys, stage_with_state(
        {"pseudo": {"type": "pseudo_labels", "init_from": "pre:pseudo"}}, subset=128))
    assert "state.pseudo.init_from: 'pre:pseudo' is a pseudo_labels state (labels (256,)" in err
    assert "but this stage's is a pseudo_labels state (labels (128,)" in err


def test_state_init_from_outputs_saved_without_types(tmp_path):
    """Outputs saved before the state types were recorded still load; a state of another kind
    is still refused by its tensors."""
    run_tiny(tiny_recipe(), tmp_path, PLUGINS)
    folder = tmp_path / "stages" / "main"
    saved = torch.load(folder / "outputs.pt", weights_only=True)
    assert saved["state_types"] == {"pseudo": "pseudo_labels"}
    del saved["state_types"]
    torch.save(saved, folder / "outputs.pt")
    old = StageOutputs.load(folder)
    assert old.state_types == {} and old.state["pseudo"]["labels"].min() >= 0
    old.stage = "pre"
    same = compose_stage(stage_with_state({"pseudo": {"type": "pseudo_labels",
                                                      "init_from": "pre:pseudo"}}), 1, old)
    assert torch.equal(same.state["pseudo"].labels, old.state["pseudo"]["labels"])
    assert same.outputs().state_types == {"pseudo": "pseudo_labels"}
    bank = stage_with_state({"bank": {"type": "memory_bank", "init_from": "pre:pseudo"}})
    with pytest.raises(rc.RecipeError, match=r"state.bank.init_from: 'pre:pseudo' is a state "
                                             r"\(labels \(256,\).*Missing key"):
        compose_stage(bank, 1, old)
