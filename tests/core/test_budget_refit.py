"""The budget is kept: the epochs are re-fitted after the first real epoch and whenever the
measured pace drifts by more than 20 %, and the rest of the schedule is compressed over the
new epochs rather than cut."""

import json
import time

import pytest
import torch

from corekit import recipe as rc
from corekit.budget import Deadline, Pacer, Warp, fitting
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
