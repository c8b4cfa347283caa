"""Core v2 item 6: each stage saves its outputs; later stages start from them by name;
``--stage`` reruns one stage alone."""

import json

import pytest
import torch

from corekit import recipe as rc
from corekit.cli import main
from corekit.composer import compose
from corekit.handoff import StageOutputs
from corekit.runner import DataCache
from corekit.testing import plugin_set, run_tiny, tiny_recipe
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")


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
