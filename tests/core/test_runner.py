"""The run layer: check, then plan and run each stage; plans written and shown; the recipe is
never edited; later stages go stale after ``--stage``; ``--resume`` refuses what it cannot
continue."""

from __future__ import annotations

import json

import attrs
import pytest
import torch

from corekit import recipe as rc
from corekit.cli import main
from corekit.engine import numerics as nm
from corekit.runner import DataCache, KChoice, PlanContext, plan_stage, train
from corekit.runner import loop as loop_module
from corekit.runner import probes as probes_module
from corekit.runner import run as run_module
from corekit.testing import plugin_set, tiny_recipe, write_digits_folder
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")
CPU = torch.device("cpu")
TWO_STAGES = tiny_recipe(stage=[{"name": "first"}, {"name": "second"}])


def write_recipe(tmp_path, raw) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(rc.to_toml(raw))
    return str(path)


def test_a_plan_holds_every_decision_and_leaves_the_stage_it_was_given(tmp_path):
    recipe = rc.validate(tiny_recipe(data={"n_clusters": 7}, train={"budget": "5m"}))
    stage = recipe.stages[0]
    before = attrs.asdict(stage)
    context = PlanContext(PLUGINS, DataCache(CPU), CPU, KChoice(7, "recipe"))
    plan = plan_stage(stage, 0, context)
    assert attrs.asdict(stage) == before and plan.recipe_stage is stage
    assert plan.seed == 0 and plan.device == CPU and plan.k == KChoice(7, "recipe")
    assert plan.numerics.chosen == nm.Numerics() and plan.budget is not None
    assert plan.budget.probe.seconds_per_step > 0 and plan.budget.seconds <= 300
    assert plan.stage.train.epochs == plan.budget.probe.epochs == 1
    saved = json.loads(plan.save(tmp_path).read_text())
    assert saved["k"] == {"k": 7, "how": "recipe", "silhouette": None, "n_images": None}
    assert saved["budget"]["epochs"] == 1 and saved["seed"] == 0


def test_an_estimated_k_is_a_decision_not_an_edit_of_the_recipe(tmp_path):
    flat = write_digits_folder(tmp_path / "flat", range(80), class_name=None)
    raw = tiny_recipe(data={"name": f"imagefolder:{flat}"}, train={"batch_size": 16})
    del raw["data"]["subset"]
    recipe = rc.validate(raw)
    lines: list[str] = []
    train(recipe, tmp_path / "run", PLUGINS, log=lines.append, progress=False)
    assert recipe.stages[0].data.n_clusters is None and recipe.raw == raw
    plan = json.loads((tmp_path / "run/stages/main/plan.json").read_text())
    assert plan["k"]["how"] == "estimate" and plan["k"]["k"] >= 2
    assert any(f"estimated K = {plan['k']['k']}" in line for line in lines)
    assert "n_clusters" not in (tmp_path / "run/recipe.toml").read_text()
    assert main(["evaluate", str(tmp_path / "run")]) == 0  # K comes back from plan.json


def test_probes_compose_the_stage_once_for_every_candidate(tmp_path, monkeypatch):
    calls: list[str] = []
    for module in (loop_module, probes_module, run_module):
        real = module.compose

        def counted(*args, _real=real, _where=module.__name__, **kwargs):
            calls.append(_where)
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, "compose", counted)
    monkeypatch.setenv(nm.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(nm.AUTO_ENV)
    monkeypatch.setattr(nm, "precisions", lambda device: ["fp32", "bf16"])
    raw = tiny_recipe(train={"precision": "auto", "memory_format": "auto", "compile": False,
                             "budget": "5m"})
    lines: list[str] = []
    train(rc.validate(raw), tmp_path / "run", PLUGINS, log=lines.append, progress=False)
    plan = json.loads((tmp_path / "run/stages/main/plan.json").read_text())
    assert len(plan["numerics"]["trials"]) == 4 and plan["budget"] is not None
    assert calls == ["corekit.runner.loop", "corekit.runner.probes", "corekit.runner.run"]


def test_show_of_a_folder_without_a_run_says_what_to_give(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "is not a run directory (holds no recipe.toml)" in capsys.readouterr().err


def test_show_run_prints_each_stages_decisions(tmp_path, capsys):
    recipe = write_recipe(tmp_path, TWO_STAGES)
    assert main(["train", recipe, "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["show", str(tmp_path / "run")]) == 0
    shown = capsys.readouterr().out
    assert "stage first: 1 epoch(s) ran" in shown and "stage second: 1 epoch(s) ran" in shown
    assert shown.count("device cpu, seed 0") == 2 and "K = 10 (the class count)" in shown
    assert "numerics fp32" in shown


def test_rerunning_a_stage_marks_the_later_ones_stale_until_resumed(tmp_path, capsys):
    recipe = write_recipe(tmp_path, TWO_STAGES)
    out = str(tmp_path / "run")
    assert main(["train", recipe, "--out", out, "--no-progress"]) == 0
    assert main(["train", recipe, "--out", out, "--stage", "first", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "stage second: stale" in said
    assert main(["show", out]) == 0
    assert "STALE: stage 'first' was retrained" in capsys.readouterr().out
    assert main(["train", recipe, "--out", out, "--resume", "--no-progress"]) == 0
    assert main(["show", out]) == 0
    assert "STALE" not in capsys.readouterr().out


def test_resume_with_seeds_on_a_single_seed_run_is_refused(tmp_path, capsys):
    recipe = write_recipe(tmp_path, tiny_recipe())
    out = tmp_path / "run"
    assert main(["train", recipe, "--out", str(out), "--no-progress"]) == 0
    final = (out / "final.json").read_text()
    assert main(["train", recipe, "--out", str(out), "--resume", "--seeds", "2",
                 "--no-progress"]) == 2
    assert "holds a single-seed run" in capsys.readouterr().err
    assert (out / "final.json").read_text() == final and not (out / "seed-0").exists()


def test_resume_without_seeds_on_a_seeds_run_is_refused(tmp_path, capsys):
    recipe = write_recipe(tmp_path, tiny_recipe())
    out = tmp_path / "run"
    assert main(["train", recipe, "--out", str(out), "--seeds", "2", "--no-progress"]) == 0
    final = (out / "final.json").read_text()
    capsys.readouterr()
    assert main(["show", str(out)]) == 0  # one block per seed
    shown = capsys.readouterr().out
    assert shown.count("== seed-") == 2 and shown.count("stage main: 1 epoch(s) ran") == 2
    assert main(["train", recipe, "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "holds a --seeds run" in capsys.readouterr().err
    assert (out / "final.json").read_text() == final


@pytest.mark.parametrize("edit", [
    lambda r: setattr(r, "name", "other"),
    lambda r: setattr(r.stages[0].train, "seed", 3),
    lambda r: setattr(r.stages[0].data, "n_clusters", 3),
])
def test_a_validated_recipe_cannot_be_edited_in_place(edit):
    recipe = rc.validate(tiny_recipe())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        edit(recipe)
