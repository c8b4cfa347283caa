"""``--budget``: epochs fitted to a wall-clock budget, epoch-counted options scaled so the
schedule ends on time, and a clean stop with a final evaluation and checkpoint."""

import json
import re
import time

import pytest

from corekit import recipe as rc
from corekit.budget import Deadline, Pacer, parse_budget, plan, scale_stage
from corekit.cli import main
from corekit.errors import RecipeError
from corekit.testing import tiny_recipe


def test_parse_budget():
    assert parse_budget("10m") == 600 and parse_budget("1h30m") == 5400
    assert parse_budget("90s") == 90 and parse_budget("2.5m") == 150 and parse_budget(45) == 45
    assert parse_budget("10") == 10  # a bare number is seconds
    for bad in ("ten minutes", "-5s", "0m", "5x", True):
        with pytest.raises(RecipeError):
            parse_budget(bad)
    with pytest.raises(RecipeError, match="train.budget: 'soon' is not a duration"):
        rc.validate(tiny_recipe(train={"budget": "soon"}))


def test_plan_fits_epochs_and_never_exceeds_the_recipe():
    p = plan(100.0, seconds_per_step=0.5, seconds_per_estep=5.0, steps_per_epoch=10,
             recipe_epochs=1000)
    assert p.seconds_per_epoch == 10.0 and p.epochs == 9  # 0.9 × 100 s / 10 s
    assert plan(1e6, 0.5, 5.0, 10, 40).epochs == 40
    assert plan(1.0, 0.5, 5.0, 10, 40).epochs == 1


def test_scale_stage_lays_the_schedule_out_for_the_new_length():
    raw = tiny_recipe(train={"epochs": 1000, "schedule": {"type": "cosine", "warmup_epochs": 50,
                                                          "cosine_epochs": 1000}},
                      losses={"instance": {"type": "nt_xent", "start_epoch": 50}},
                      model={"heads": {"noisy": {"type": "mlp_projector", "input": "proj",
                                                 "start_epoch": 50}}})
    stage = scale_stage(rc.validate(raw).stages[0], 10)
    assert stage.train.epochs == 10
    assert stage.train.schedule.options == {"warmup_epochs": 0.5, "cosine_epochs": 10.0}
    assert stage.losses["instance"].start_epoch == 0  # round(50 × 10/1000)
    assert stage.model.heads["noisy"].options["start_epoch"] == 0
    assert stage.model.heads["proj"].options == {"hidden": 32, "out_dim": 16}


def test_deadline():
    deadline = Deadline.after(60)
    assert deadline.fits(10) and not deadline.fits(120) and 59 < deadline.left <= 60


def test_a_budgeted_run_stops_in_time_with_its_final_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    started = time.perf_counter()
    assert main(["train", "simclr-kmeans", "--data", "digits", "--budget", "6s",
                 "--set", "train.epochs=500", "--out", str(out), "--no-progress"]) == 0
    elapsed = time.perf_counter() - started
    printed = capsys.readouterr().out
    assert re.search(r"budget \ds:", printed) and "epoch options scaled from 500 epochs" in printed
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert 1 <= len(records) < 500 and "nmi" in records[-1]  # evaluated at its last epoch
    assert (out / "stages" / "main" / "checkpoint.pt").exists()
    assert (out / "assignments.csv").exists()
    assert elapsed < 6 + 20  # generous: start-up, probe and a loaded machine
    # the decision records: what the probe planned, each re-fit, and the epochs that ran
    plan_json = json.loads((out / "stages" / "main" / "plan.json").read_text())
    final = json.loads((out / "final.json").read_text())
    assert plan_json["budget"]["epochs"] == plan_json["epochs"]  # the probe's plan
    assert plan_json["refits"][0]["epoch"] == 1 and plan_json["refits"][0]["why"] == "first epoch"
    assert plan_json["epochs_run"] == len(records) == final["epochs"]
    assert final["budget_refits"] == plan_json["refits"]
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "re-fit after epoch 1 (first epoch)" in shown
    assert f"stage main: {len(records)} epoch(s) ran" in shown


def test_the_stage_stops_at_its_deadline_with_eval_and_checkpoint(tmp_path):
    import torch

    from corekit.composer import compose
    from corekit.engine.trainer import StageTrainer
    from corekit.plugins import load_plugins
    from corekit.runner import DataCache

    stage = rc.validate(tiny_recipe(train={"epochs": 5, "checkpoint_every": 0})).stages[0]
    cache = DataCache(torch.device("cpu"))
    c = compose(load_plugins(), stage, lambda n: cache(n, 256), torch.device("cpu"), None, 3)
    said = []
    trainer = StageTrainer(c, tmp_path, torch.device("cpu"), None, 0, said.append,
                           progress=False, pacer=Pacer.after(0.0, 0.0, 5, 5))
    result = trainer.run()
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1] and "nmi" in records[0] and "nmi" in result
    assert (tmp_path / "stages" / "main" / "checkpoint.pt").exists()
    assert any("budget: re-fit after epoch 1 (first epoch)" in line and "-> 1 epoch(s)" in line
               and line.endswith("stopping now") for line in said)
