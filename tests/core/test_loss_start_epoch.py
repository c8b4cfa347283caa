"""A loss's ``start_epoch``: a loss whose ``start_epoch`` is N is left out of the total before
(0-based) epoch N and counted, with its weight, from epoch N on. Before these tests only a
DigPro training test noticed when the engine ignored it."""

import json

import pytest
import torch

from corekit import recipe as rc
from corekit.composer import compose
from corekit.data import load_dataset
from corekit.engine.trainer import StageTrainer
from corekit.testing import plugin_set, run_tiny, tiny_recipe
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")
START, WEIGHT = 2, 0.5


def late_recipe(**train):
    """The tiny recipe plus ``late``: the toy hook recorder (mean square of ``proj``, which
    logs every forward with its epoch) from epoch ``START`` on, weight ``WEIGHT``."""
    return tiny_recipe(train=train, losses={"late": {"type": "toy.hook_recorder",
                                                     "start_epoch": START, "weight": WEIGHT}})


def test_loss_is_left_out_before_start_epoch_and_counted_from_it(tmp_path):
    cpu = torch.device("cpu")
    stage = rc.validate(late_recipe(epochs=4)).stages[0]
    data = load_dataset("digits")
    c = compose(PLUGINS, stage, lambda name: data, cpu, None, 3)
    trainer = StageTrainer(c, tmp_path, cpu, None, 0, lambda _: None, progress=False)
    late = next(w.fn for w in c.losses if w.name == "late")
    generator = torch.Generator().manual_seed(0)
    indices = torch.arange(64)
    for epoch in range(4):
        out = trainer.train_step(indices, data.batch(indices), epoch, generator)
        if epoch < START:
            assert "late" not in out, epoch
            assert out["loss"].item() == out["instance"].item(), epoch
        else:
            assert out["late"].item() > 0, epoch
            assert out["loss"].item() == pytest.approx(
                out["instance"].item() + WEIGHT * out["late"].item(), rel=1e-6), epoch
    assert [epoch for hook, epoch, _ in late.calls if hook == "loss"] == [2, 3]


def test_epoch_records_of_a_run_count_the_loss_from_start_epoch_on(tmp_path):
    run_tiny(late_recipe(epochs=3, steps_per_epoch=2), tmp_path, PLUGINS)
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]  # 1-based: epoch 3 is epoch index 2
    for record in records[:START]:
        assert "late" not in record and record["loss"] == pytest.approx(record["instance"])
    last = records[START]
    assert last["late"] > 0
    assert last["loss"] == pytest.approx(last["instance"] + WEIGHT * last["late"], rel=1e-6)
