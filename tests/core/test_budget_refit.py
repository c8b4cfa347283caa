"""The budget is kept: the epochs are re-fitted after the first real epoch and whenever the
measured pace drifts by more than 20 %, and the rest of the schedule is compressed over the
new epochs rather than cut."""

import json
import time

import pytest
import torch

from corekit import recipe as rc
from corekit.budget import (
    Deadline,
    Pacer,
    Refit,
    Warp,
    fitting,
    pace_window,
    periodic_seconds,
    plan,
)
from corekit.runner import StageProbe
from corekit.testing import tiny_recipe


def test_warp_is_the_identity_until_compressed():
    warp = Warp()
    assert warp.epoch(7) == 7 and warp.step(123, 10) == 123
    squeezed = warp.compressed(2, 6, 10)  # epochs 2..6 carry the schedule's 2..10
    assert squeezed.at(2) == 2 and squeezed.at(6) == 10 and squeezed.at(4) == 6
    assert squeezed.epoch(1) == 1 and squeezed.epoch(5) == 8
    assert squeezed.step(60, 10) == 100  # real epoch 6.0 = schedule epoch 10, step 100
    again = squeezed.compressed(4, 9, 10)  # a second re-fit starts where the first stands
    assert again.at(4) == 6 and again.at(9) == pytest.approx(10)


def test_fitting_rounds_to_the_nearest_epoch_within_the_limit():
    assert fitting(10.0, 11.0, 3.0) == 3  # 10/3 = 3.3 -> 3
    assert fitting(11.0, 12.5, 3.0) == 4  # 3.7 -> 4, ends at 12 <= 12.5
    assert fitting(11.0, 11.5, 3.0) == 3  # 4 would end past the limit
    assert fitting(1.0, 1.0, 3.0) == 0


def _pacer(target: float, limit: float, planned: int = 100, most: int = 100) -> Pacer:
    return Pacer(Deadline.after(target), Deadline.after(limit), planned, most)


def test_pacer_refits_after_the_first_epoch_and_on_drift_only():
    pacer = _pacer(100.0, 103.0)
    first = pacer.after_epoch(1, 2.0)
    assert first is not None and first.why == "first epoch" and first.epochs == 1 + 50
    assert pacer.after_epoch(2, 2.2) is None  # +5 %: kept
    assert pacer.after_epoch(3, 2.3) is None  # mean 2.17, +8 %: kept
    drift = pacer.after_epoch(4, 4.0)  # mean of the last 3: 2.83, +42 %
    assert drift is not None and drift.why.startswith("pace +")
    assert drift.epochs == 4 + round(100.0 / drift.seconds_per_epoch)
    assert [r.epoch for r in pacer.refits] == [1, 4]
    # the schedule still ends at the planned epoch 100, at the re-fitted last epoch
    assert pacer.warp.at(drift.epochs) == pytest.approx(100)


def test_pacer_never_gives_more_than_the_recipe_and_stops_when_out_of_time():
    generous = _pacer(1000.0, 1030.0, planned=20, most=30)
    assert generous.after_epoch(1, 1.0).epochs == 30  # the recipe's 30, not 1000
    assert generous.warp.at(30) == pytest.approx(20)  # stretched over the extra epochs
    late = _pacer(5.0, 5.0)
    assert late.after_epoch(1, 2.0).epochs == 3
    late.limit = Deadline.after(1.0)  # the machine got slower: the next epoch cannot fit
    stop = late.after_epoch(2, 2.0)
    assert stop is not None and stop.why == "out of time" and stop.epochs == 2


def _trainer(tmp_path, pacer, epochs=20):
    from corekit.composer import compose
    from corekit.engine.trainer import StageTrainer
    from corekit.plugins import load_plugins
    from corekit.runner import DataCache

    raw = tiny_recipe(train={"epochs": epochs, "checkpoint_every": 0, "eval_every": 0,
                             "schedule": {"type": "cosine"}},
                      losses={"late": {"type": "nt_xent", "head": "proj", "start_epoch": 10}})
    stage = rc.validate(raw).stages[0]
    cache = DataCache(torch.device("cpu"))
    c = compose(load_plugins(), stage, lambda n: cache(n, 128), torch.device("cpu"), None, 2)
    said: list[str] = []
    return StageTrainer(c, tmp_path, torch.device("cpu"), None, 0, said.append,
                        progress=False, pacer=pacer), said


def test_a_slower_pace_compresses_the_schedule_instead_of_cutting_it(tmp_path, monkeypatch):
    """Epochs take 0.1 s, then 0.3 s from the third on (the load rose): the stage re-fits, and
    its cosine learning rate still ends near 0 in the last epoch that ran; the loss that starts
    at epoch 10 of 20 starts half-way through the epochs that ran."""
    trainer, said = _trainer(tmp_path, None)
    trainer.pacer = pacer = Pacer.after(2.4, 2.6, planned=20, most=20)
    real_epoch = trainer._epoch
    active: list[tuple[int, bool]] = []

    def slowed(epoch):
        time.sleep(0.1 if epoch < 2 else 0.3)
        out = real_epoch(epoch)
        active.append((epoch, "late" in out))
        return out

    monkeypatch.setattr(trainer, "_epoch", slowed)
    trainer.run()
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    ran = len(records)
    assert 4 <= ran < 20 and trainer.epochs == ran
    assert any("pace +" in r.why for r in pacer.refits), said
    base = trainer.composed.base_lrs[0]
    assert records[-1]["lr"] < 0.1 * base  # the cosine ran to its end
    first_on = next(e for e, on in active if on)
    assert abs(first_on - ran / 2) <= 1.5  # start_epoch 10 of 20, scaled to the epochs that ran


def test_without_a_pacer_the_schedule_is_the_recipe_s(tmp_path):
    trainer, _ = _trainer(tmp_path, None)
    assert trainer.schedule_step(17) == 17 and trainer.schedule_epoch(2) == 2


def test_the_budget_is_per_seed_and_says_so(tmp_path, capsys):
    from corekit.cli import main

    out = tmp_path / "seeds"
    assert main(["train", "simclr-kmeans", "--data", "digits", "--budget", "10s", "--seeds", "2",
                 "--set", "train.epochs=500", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "budget 10s per seed: each of the 2 seeds trains within it (up to 20s in all)" \
        in printed
    runs = json.loads((out / "final.json").read_text())["runs"]
    # each seed is fitted on its own (its own first-epoch re-fit) and given the whole 10 s
    # (trains until about 10 s less the 3-4 s kept for its report), not a share of it (5 s
    # each); a loaded machine only makes a seed take longer
    assert all(run["budget_refits"][0]["why"] == "first epoch" for run in runs)
    assert all(run["seconds"] > 5.5 for run in runs)


def test_a_slower_machine_keeps_more_time_for_the_tail():
    """At twice the probe's pace the report after training takes about twice as long too:
    the re-fit keeps one more tail (10 s) and fits 5 fewer 2-s epochs."""
    quiet = _pacer(100.0, 103.0)
    quiet.tail, quiet.expected = 10.0, 2.0
    busy = _pacer(100.0, 103.0)
    busy.tail, busy.expected = 10.0, 1.0
    assert quiet.after_epoch(1, 2.0).epochs - busy.after_epoch(1, 2.0).epochs == 5


class _Halving(Pacer):
    """A pacer that gives the stage half its planned epochs after the first one."""

    def after_epoch(self, done: int, seconds: float) -> Refit | None:
        return self.apply(Refit(done, seconds, self.planned // 2, "test")) if done == 1 else None


def test_a_compressed_run_ends_the_ema_momentum_schedule(tmp_path, monkeypatch):
    """Re-fitted to 10 of its 20 epochs, the stage's cosine EMA momentum still reaches 1 on its
    last step, as the planned 20 epochs would have."""
    from corekit.composer import compose
    from corekit.engine.trainer import StageTrainer
    from corekit.plugins import load_plugins
    from corekit.runner import DataCache

    raw = tiny_recipe(model={"target": {"parts": ["proj"], "schedule": "cosine",
                                        "momentum": 0.9}},
                      train={"epochs": 20, "checkpoint_every": 0, "eval_every": 0})
    stage = rc.validate(raw).stages[0]
    cache = DataCache(torch.device("cpu"))
    c = compose(load_plugins(), stage, lambda n: cache(n, 128), torch.device("cpu"), None, 2)
    ema = c.state["target"]
    used: list[float] = []
    real_update = ema.update
    monkeypatch.setattr(ema, "update", lambda online, m: (used.append(m),
                                                          real_update(online, m)))
    pacer = _Halving(Deadline.after(60.0), Deadline.after(60.0), planned=20, most=20)
    StageTrainer(c, tmp_path, torch.device("cpu"), None, 0, lambda _: None, progress=False,
                 pacer=pacer).run()
    assert len(used) == 10 * 2  # 10 epochs of 2 steps ran
    assert used[0] == pytest.approx(0.9, abs=0.01) and used[-1] == pytest.approx(1.0)
    assert used == sorted(used)


def test_a_periodic_evaluation_is_not_taken_for_a_drift():
    """An evaluation every 10 epochs makes every 10th epoch twice as long: the pace is the mean
    of 10 epochs, so that is no drift, and the first fit counts the evaluations' share before
    any ran."""
    stage = rc.validate(tiny_recipe(train={"eval_every": 10, "checkpoint_every": 5})).stages[0]
    assert pace_window(stage) == 10
    assert periodic_seconds(stage.train, 1.0, 0.5) == pytest.approx(0.2)
    pacer = _pacer(100.0, 103.0)
    pacer.window, pacer.periodic = 10, 0.01
    assert pacer.after_epoch(1, 0.1).seconds_per_epoch == pytest.approx(0.11)
    for done in range(2, 31):
        assert pacer.after_epoch(done, 0.2 if done % 10 == 1 else 0.1) is None, done


def test_the_time_kept_after_training_is_the_probe_s_evaluation_and_checkpoint():
    """A stage whose evaluation and checkpoint take 4 s more trains 4 s less; without them the
    tail is a few seconds whatever the budget, not a share of it."""
    from corekit.runner.plan import AFTER_TRAINING_SECONDS, BudgetChoice

    quick = BudgetChoice(30.0, plan(30.0, 0.01, 0.0, 10, 1000, 0.02, 0.01))
    slow = BudgetChoice(30.0, plan(30.0, 0.01, 0.0, 10, 1000, 3.0, 1.03))
    assert quick.tail_seconds == pytest.approx(0.03 + AFTER_TRAINING_SECONDS)
    assert quick.training_seconds - slow.training_seconds == pytest.approx(4.0)
    assert quick.training_seconds > 0.9 * 30 - 1.0
    longer = BudgetChoice(120.0, plan(120.0, 0.01, 0.0, 10, 1000, 0.02, 0.01))
    assert longer.tail_seconds == quick.tail_seconds


def test_a_resumed_pacer_takes_the_refits_made_up_to_its_checkpoint():
    from corekit.runner.plan import BudgetChoice

    stage = rc.validate(tiny_recipe(train={"epochs": 100})).stages[0]
    choice = BudgetChoice(60.0, plan(60.0, 0.01, 0.0, 10, 1000))
    refits = [Refit(1, 0.2, 40, "first epoch"), Refit(5, 0.3, 30, "pace +50%"),
              Refit(12, 0.25, 34, "pace -17%")]
    pacer = choice.resumed_pacer(stage, refits, 8)
    assert pacer.refits == refits[:2] and pacer.epochs == 30 and pacer.pace == 0.3
    assert pacer.warp == Warp().compressed(1, 40, choice.probe.epochs).compressed(
        5, 30, choice.probe.epochs)
    assert pacer.deadline.left == pytest.approx((30 - 8) * 0.3, abs=0.5)
    assert choice.resumed_pacer(stage, [], 8).refits == []  # nothing taken yet: a new pacer


def test_resume_continues_the_refitted_epochs_and_schedule(tmp_path, monkeypatch, capsys):
    """A budgeted run interrupted after 1 epoch keeps each re-fit in plan.json as it is taken;
    --resume continues with those: the probe's plan, the re-fitted epoch count and the
    compressed schedule, not a new probe's plan of the budget."""
    from corekit.cli import main
    from corekit.engine.trainer import StageTrainer

    out = tmp_path / "run"
    args = ["train", "simclr-kmeans", "--data", "digits", "--budget", "6s",
            "--set", "train.epochs=500", "--set", "train.checkpoint_every=1",
            "--set", "data.subset=512", "--set", "train.batch_size=64",
            "--out", str(out), "--no-progress"]
    real_epoch = StageTrainer._epoch

    def interrupted(self, epoch):  # the second epoch: a loaded machine plans only a few
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(StageTrainer, "_epoch", interrupted)
    assert main(args) == 130
    recorded = json.loads((out / "stages" / "main" / "plan.json").read_text())
    refits = [Refit(**r) for r in recorded["refits"]]
    assert refits and refits[0].why == "first epoch" and refits[-1].epochs < 500
    monkeypatch.setattr(StageTrainer, "_epoch", real_epoch)
    started: list[tuple[int, int, Warp]] = []
    real_run = StageTrainer.run

    def spy(self, resume=None):
        started.append((self.train_cfg.epochs, self.epochs, self.pacer.warp))
        return real_run(self, resume)

    monkeypatch.setattr(StageTrainer, "run", spy)
    probed: list[float] = []
    real_budget = StageProbe.budget

    def budget_probe(self, numerics, seconds):
        probed.append(seconds)
        return real_budget(self, numerics, seconds)

    monkeypatch.setattr(StageProbe, "budget", budget_probe)
    monkeypatch.setattr(StageProbe, "numerics", lambda *_: pytest.fail("numerics probed again"))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert probed == []  # the recorded plan is kept: no new budget probe
    assert f"budget: continues as re-fitted before, {refits[-1].describe()}" in \
        capsys.readouterr().out
    warp = Warp()
    for refit in refits:
        warp = warp.compressed(refit.epoch, refit.epochs, recorded["epochs"])
    assert started == [(recorded["epochs"], refits[-1].epochs, warp)]
    resumed = json.loads((out / "stages" / "main" / "plan.json").read_text())
    assert resumed["budget"] == recorded["budget"]
    assert resumed["refits"][:len(refits)] == recorded["refits"]
