"""Issue #23, "auto by measurement": ``train.precision / memory_format / compile = "auto"`` are
decided by timing real steps of every candidate, safely, logged, cached; explicit settings win;
``compile = true`` falls back to eager with a message where ``torch.compile`` fails. The tie
rule, the cache's context and the probe's cap (issue #34) are in test_numerics_probe.py."""

import json
import math

import pytest
import torch

from corekit import recipe as rc
from corekit.engine import numerics as nm
from corekit.errors import RecipeError
from corekit.network import Network
from corekit.run_files import load_run_recipe
from corekit.runner import trained_stage
from corekit.testing import (
    assert_above_chance,
    plugin_set,
    record_evaluations,
    run_tiny,
    tiny_recipe,
)
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")
CPU = torch.device("cpu")
STAGE_DIR = "stages/main"
FIXED = {"precision": "fp32", "memory_format": "contiguous", "compile": False}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """A cache of the test's own, and ``"auto"`` probed (the suite resolves it to fp32)."""
    monkeypatch.setenv(nm.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(nm.AUTO_ENV, raising=False)


class FakeProber:
    """Trials without training: fp32 takes ``slow`` seconds a step, the rest ``fast``."""

    def __init__(self, slow: float = 0.2, fast: float = 0.1) -> None:
        self.slow, self.fast, self.calls = slow, fast, []

    def seconds(self, numerics):
        return self.slow if numerics.precision == "fp32" else self.fast

    def check(self, numerics):
        return nm.Trial(numerics, 1.0)

    def rounds(self, options):
        self.calls.append([n.label() for n in options])
        return nm.Outcome(tuple(nm.Trial.timed(n, 1.0, [self.seconds(n)] * 3)
                                for n in options), 1.0)


def trial(label, loss=1.0, seconds=0.1, finite=True, error=None):
    return nm.Trial(nm.Numerics.from_label(label), loss, seconds, finite, error)


def test_pick_keeps_the_fastest_safe_candidate():
    decision = nm.pick([trial("fp32", seconds=0.3), trial("bf16", loss=1.01, seconds=0.1),
                        trial("fp32+channels_last", seconds=0.2)])
    assert decision.chosen.label() == "bf16"
    assert decision.rejected == {}


def test_a_fast_unsafe_candidate_does_not_win_a_tie():
    decision = nm.pick([trial("fp32", loss=2.0, seconds=0.1),
                        trial("bf16", loss=2.5, seconds=0.05),
                        trial("fp32+channels_last", loss=2.0, seconds=0.102)])
    assert decision.chosen.label() == "fp32"


def test_pick_sets_aside_unsafe_or_failed_candidates():
    decision = nm.pick([trial("fp32", loss=2.0, seconds=0.3),
                        trial("bf16", loss=2.5, seconds=0.05),
                        trial("bf16+channels_last", finite=False, seconds=0.01),
                        trial("fp32+compile", error="RuntimeError: no compiler", seconds=0.01),
                        trial("fp32+channels_last", loss=2.02, seconds=0.2)])
    assert decision.chosen.label() == "fp32+channels_last"
    assert set(decision.rejected) == {"bf16", "bf16+channels_last", "fp32+compile"}
    assert "2.5 vs 2" in decision.rejected["bf16"]
    assert decision.rejected["bf16+channels_last"] == "non-finite loss"


def test_candidates_hold_explicit_settings_fixed(monkeypatch):
    monkeypatch.setattr(nm, "cpu_has_native_bf16", lambda: True)
    train = rc.Train(precision="auto", memory_format="channels_last", compile=False)
    assert [c.label() for c in nm.candidates(train, CPU)] == [
        "fp32+channels_last", "bf16+channels_last"]
    everything = rc.Train(precision="auto", memory_format="auto", compile="auto")
    labels = [c.label() for c in nm.candidates(everything, CPU)]
    assert len(labels) == 8 and labels[0] == "fp32"


def test_emulated_bf16_is_never_a_candidate(monkeypatch):
    monkeypatch.setattr(nm, "cpu_has_native_bf16", lambda: False)
    train = rc.Train(precision="auto", memory_format="contiguous", compile=False)
    assert [c.label() for c in nm.candidates(train, CPU)] == ["fp32"]


def test_decision_is_cached_per_machine_and_stage(tmp_path):
    stage = rc.validate(tiny_recipe(train={"precision": "auto",
                                           "memory_format": "auto"})).stages[0]
    prober = FakeProber()
    cache = nm.DecisionCache(tmp_path / "n.json")
    first = nm.decide(stage, CPU, (1, 8, 8), prober, cache)
    assert len(prober.calls) == 1 and not first.cached
    again = nm.decide(stage, CPU, (1, 8, 8), prober, cache)
    assert again.cached and again.chosen == first.chosen and len(prober.calls) == 1
    bigger = rc.validate(tiny_recipe(train={"precision": "auto", "memory_format": "auto",
                                            "batch_size": 32})).stages[0]
    assert nm.cache_key(bigger, CPU, (1, 8, 8)) != nm.cache_key(stage, CPU, (1, 8, 8))
    assert nm.cache_key(stage, CPU, (3, 8, 8)) != nm.cache_key(stage, CPU, (1, 8, 8))


def test_a_corrupt_cache_is_an_empty_one(tmp_path):
    path = tmp_path / "n.json"
    path.write_text("{not json")
    cache = nm.DecisionCache(path)
    stage = rc.validate(tiny_recipe()).stages[0]
    context = nm.ProbeContext.of(stage, CPU, (1, 8, 8))
    assert cache.get("anything", context) is None
    cache.put("key", context, nm.Decision(nm.Numerics()))
    assert cache.get("key", context).chosen == nm.Numerics()


def test_auto_run_times_candidates_and_writes_its_choice(tmp_path):
    raw = tiny_recipe(train={"precision": "auto", "memory_format": "auto", "compile": False,
                             "budget": "5m"})
    raw["model"]["backbone"] = {"type": "small_cnn", "width": 8, "out_dim": 16}
    lines: list[str] = []
    run_tiny(raw, tmp_path / "a", PLUGINS, log=lines.append)
    saved = json.loads((tmp_path / "a" / STAGE_DIR / "plan.json").read_text())["numerics"]
    labels = [t["numerics"] for t in saved["trials"]]
    assert labels[:2] == ["fp32", "fp32+channels_last"]
    assert all(t["seconds_per_step"] > 0 and math.isfinite(t["first_loss"])
               and len(t["rounds"]) >= 1 for t in saved["trials"])
    chosen = nm.Numerics(**saved["chosen"])
    assert any(line.startswith(f"stage main: numerics auto -> {chosen.label()}")
               for line in lines)
    recipe = load_run_recipe(tmp_path / "a")
    assert trained_stage(tmp_path / "a", recipe, 0).train == chosen.apply(recipe.stages[0]).train
    assert 'memory_format = "auto"' in (tmp_path / "a" / "recipe.toml").read_text()
    again: list[str] = []
    run_tiny(raw, tmp_path / "b", PLUGINS, log=again.append)
    assert any("cached decision" in line for line in again)


def test_explicit_numerics_run_no_probe(tmp_path):
    run_tiny(tiny_recipe(train=FIXED), tmp_path, PLUGINS)
    saved = json.loads((tmp_path / STAGE_DIR / "plan.json").read_text())["numerics"]
    assert saved["trials"] == [] and saved["chosen"]["precision"] == "fp32"


def test_compile_failure_falls_back_to_eager_with_a_message(tmp_path, monkeypatch):
    def broken_compile(self):
        def fail(*_):
            raise RuntimeError("inductor: no working C++ compiler")
        for module in [*self.encoders.values(), *self.heads.values()]:
            module.register_forward_pre_hook(fail)

    monkeypatch.setattr(Network, "compile_parts", broken_compile)
    evaluations = record_evaluations(monkeypatch)
    lines: list[str] = []
    final = run_tiny(tiny_recipe(train=FIXED | {"compile": True}), tmp_path, PLUGINS,
                     log=lines.append)
    assert_above_chance(final, evaluations)
    saved = json.loads((tmp_path / STAGE_DIR / "plan.json").read_text())["numerics"]
    assert saved["chosen"]["compile"] is False
    assert "no working C++ compiler" in saved["rejected"]["fp32+compile"]
    assert any("fp32+compile failed: RuntimeError" in line for line in lines)


@pytest.mark.parametrize("key, value, expected", [
    ("memory_format", "channel_last", "did you mean 'channels_last'"),
    ("compile", "yes", "train.compile"),
    ("precision", "bf32", "train.precision"),
])
def test_numerics_options_are_validated_with_the_recipe(key, value, expected):
    with pytest.raises(RecipeError, match=expected):
        rc.validate(tiny_recipe(train={key: value}))


@pytest.mark.slow
def test_compiled_training_keeps_checkpoint_names(tmp_path):
    from corekit import checkpoint_io as checkpoint

    raw = tiny_recipe(train=FIXED | {"compile": True})
    run_tiny(raw, tmp_path / "compiled", PLUGINS)
    saved = json.loads((tmp_path / "compiled" / STAGE_DIR / "plan.json").read_text())["numerics"]
    assert saved["chosen"]["compile"] is True, saved["rejected"]
    run_tiny(tiny_recipe(train=FIXED), tmp_path / "eager", PLUGINS)
    keys = [set(checkpoint.load(tmp_path / r / STAGE_DIR / "checkpoint.pt")["online"])
            for r in ("compiled", "eager")]
    assert keys[0] == keys[1]
