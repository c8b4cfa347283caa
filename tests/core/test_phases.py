"""``train.time_phases``: seconds per loop phase in metrics.jsonl, and nothing when off."""

import json

import torch

from corekit.engine.phases import PHASES, PhaseTimer
from corekit.testing import plugin_set, run_tiny, tiny_recipe
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")


def test_phase_timer_sums_per_name_and_resets():
    timer = PhaseTimer(enabled=True)
    for _ in range(2):
        with timer("forward"):
            torch.ones(64, 64) @ torch.ones(64, 64)
    assert list(timer.iterate("data", [1, 2, 3])) == [1, 2, 3]
    taken = timer.take()
    assert set(taken) == {"time_forward", "time_data"} and all(v > 0 for v in taken.values())
    assert timer.take() == {}


def test_disabled_timer_records_nothing():
    timer = PhaseTimer()
    with timer("forward"):
        pass
    assert list(timer.iterate("data", "ab")) == ["a", "b"] and timer.take() == {}


def epochs(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_time_phases_writes_every_phase_of_an_em_recipe(tmp_path):
    raw = tiny_recipe(
        model={"target": {"parts": ["backbone", "proj"], "momentum": 0.99}},
        clusterer={"every": 1, "before_training": True},
        train={"time_phases": True, "epochs": 2},
    )
    run_tiny(raw, tmp_path / "on", PLUGINS)
    for record in epochs(tmp_path / "on"):
        assert {f"time_{p}" for p in PHASES} <= set(record), sorted(record)
        loop = sum(record[f"time_{p}"] for p in PHASES)
        assert 0 < loop <= record["seconds"]
    run_tiny(tiny_recipe(), tmp_path / "off", PLUGINS)
    assert not any(key.startswith("time_") for key in epochs(tmp_path / "off")[0])
