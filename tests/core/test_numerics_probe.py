"""Issue #34, "a cheaper, steadier probe": the tie rule (settings within 3% of the fastest are a
tie, won by the simpler one), a cached decision redone when the machine, torch or the shapes
change, and the probe's time cap (rounds interleaved, medians taken, at most 5% of the stage
and 20 s). Timings here come from a fake clock, so every check is exact."""

from __future__ import annotations

import itertools

import attrs
import pytest
import torch

from corekit import recipe as rc
from corekit.engine import numerics as nm
from corekit.engine import probe_rounds as pr
from corekit.runner import DataCache, KChoice, PlanContext, plan_stage
from corekit.testing import plugin_set, tiny_recipe
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")
CPU = torch.device("cpu")
FP32, FP32_CL = nm.Numerics(), nm.Numerics("fp32", "channels_last")
BF16, BF16_CL = nm.Numerics("bf16"), nm.Numerics("bf16", "channels_last")
FP32_COMPILE = nm.Numerics(compile=True)


# -- the tie rule -------------------------------------------------------------------------------
def test_the_same_times_always_give_the_same_choice():
    times = [(FP32, 0.100), (FP32_CL, 0.0985), (BF16, 0.0990), (BF16_CL, 0.0975)]
    choices = {nm.choose(list(order)) for order in itertools.permutations(times)}
    assert choices == {FP32}


def test_a_two_percent_gain_is_a_tie_that_the_simpler_setting_wins():
    assert nm.choose([(FP32, 0.100), (BF16, 0.098)]) == FP32
    assert nm.choose([(FP32_CL, 0.100), (BF16, 0.098)]) == FP32_CL
    assert nm.choose([(BF16, 0.100), (BF16_CL, 0.098)]) == BF16
    assert nm.choose([(BF16, 0.100), (nm.Numerics("bf16", compile=True), 0.098)]) == BF16


def test_a_ten_percent_gain_picks_the_faster_setting():
    assert nm.choose([(FP32, 0.110), (BF16, 0.100)]) == BF16
    assert nm.choose([(FP32, 0.110), (FP32_CL, 0.1005), (BF16_CL, 0.100)]) == FP32_CL


def test_simplicity_orders_compile_then_precision_then_layout():
    ordered = sorted([FP32_COMPILE, BF16_CL, BF16, FP32_CL, FP32], key=nm.Numerics.complexity)
    assert ordered == [FP32, FP32_CL, BF16, BF16_CL, FP32_COMPILE]


# -- the cache's context ------------------------------------------------------------------------
class CountingProber:
    def __init__(self) -> None:
        self.probes = 0

    def check(self, numerics):
        return nm.Trial(numerics, 1.0)

    def rounds(self, options):
        self.probes += 1
        return nm.Outcome(tuple(nm.Trial.timed(n, 1.0, [0.1 if n.precision == "bf16" else 0.2])
                                for n in options), 1.0)


@pytest.fixture
def auto_stage(monkeypatch):
    monkeypatch.delenv(nm.AUTO_ENV, raising=False)
    monkeypatch.setattr(nm, "precisions", lambda device: ["fp32", "bf16"])
    return rc.validate(tiny_recipe(train={"precision": "auto", "memory_format": "auto",
                                          "compile": False})).stages[0]


@pytest.mark.parametrize("change", ["cpu_flags", "torch", "image_shape", "batch_size"])
def test_a_cached_decision_is_redone_when_its_context_changes(auto_stage, tmp_path, monkeypatch,
                                                              change):
    cache, prober = nm.DecisionCache(tmp_path / "n.json"), CountingProber()
    stage, shape = auto_stage, (1, 8, 8)
    nm.decide(stage, CPU, shape, prober, cache)
    nm.decide(stage, CPU, shape, prober, cache)
    assert prober.probes == 1
    if change == "cpu_flags":
        monkeypatch.setattr(nm, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    elif change == "torch":
        monkeypatch.setattr(torch, "__version__", "9.9.9")
    elif change == "image_shape":
        shape = (3, 8, 8)
    else:
        stage = attrs.evolve(stage, train=attrs.evolve(stage.train, batch_size=32))
    again = nm.decide(stage, CPU, shape, prober, cache)
    assert prober.probes == 2 and not again.cached
    assert nm.decide(stage, CPU, shape, prober, cache).cached and prober.probes == 2


def test_the_cache_records_what_the_decision_was_made_for(auto_stage, tmp_path):
    import json

    cache = nm.DecisionCache(tmp_path / "n.json")
    nm.decide(auto_stage, CPU, (1, 8, 8), CountingProber(), cache)
    (entry,) = json.loads((tmp_path / "n.json").read_text()).values()
    assert entry["context"]["torch"] == torch.__version__
    assert entry["context"]["cpu_flags"] == sorted(nm.cpu_flags())
    assert entry["context"]["image_shape"] == [1, 8, 8]
    assert entry["context"]["batch_size"] == auto_stage.train.batch_size


def test_without_native_bf16_no_bf16_trial_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(nm.AUTO_ENV, raising=False)
    monkeypatch.setattr(nm, "cpu_has_native_bf16", lambda: False)
    stage = rc.validate(tiny_recipe(train={"precision": "auto", "memory_format": "auto",
                                           "compile": False})).stages[0]
    prober = RecordingProber()
    nm.decide(stage, CPU, (1, 8, 8), prober, nm.DecisionCache(tmp_path / "n.json"))
    assert prober.asked == [["fp32", "fp32+channels_last"]]


class RecordingProber(CountingProber):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[str]] = []

    def rounds(self, options):
        self.asked.append([n.label() for n in options])
        return super().rounds(options)


# -- the probe's rounds and cap -----------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeContender:
    """Starting costs ``setup`` seconds (``compile_seconds`` for a compiled candidate); each
    step costs the next of ``steps`` (cycled)."""

    def __init__(self, clock, numerics, steps, setup, compile_seconds, log):
        self.clock, self.numerics, self.setup = clock, numerics, setup
        self.steps, self.compile_seconds, self.log = itertools.cycle(steps), compile_seconds, log

    def start(self):
        self.clock.now += self.compile_seconds if self.numerics.compile else self.setup
        self.log.append(("start", self.numerics.label()))
        return 1.0

    def step(self):
        self.clock.now += next(self.steps)
        self.log.append(("step", self.numerics.label()))
        return 1.0


def probe(options, steps, cap, setup=0.5, compile_seconds=100.0):
    clock, log = Clock(), []
    outcome = pr.interleave(
        options, lambda n: FakeContender(clock, n, steps[n], setup, compile_seconds, log), cap,
        clock)
    return outcome, log


EAGER = [FP32, FP32_CL, BF16, BF16_CL]
PAPER_STEPS = {FP32: [1.0], FP32_CL: [0.9], BF16: [0.5], BF16_CL: [0.45], FP32_COMPILE: [0.4]}


def test_a_long_stage_is_probed_in_interleaved_rounds_within_20_seconds():
    outcome, log = probe(EAGER, PAPER_STEPS, pr.Cap(stage_steps=200_000))
    assert outcome.seconds <= pr.MAX_PROBE_SECONDS
    rounds = [t.rounds for t in outcome.trials]
    assert all(len(r) == len(rounds[0]) >= pr.MIN_ROUNDS for r in rounds)
    timed = [label for kind, label in log if kind == "step"][1:]  # after the sizing step
    firsts = [timed[i * 4] for i in range(len(rounds[0]))]
    assert firsts[:4] == ["fp32", "fp32+channels_last", "bf16", "bf16+channels_last"]
    assert nm.pick(outcome.trials).chosen == BF16_CL


@pytest.mark.parametrize("cap, seconds", [
    (pr.Cap(stage_steps=200_000, stage_seconds=300.0), 15.0),  # 5% of a 5-minute budget
    (pr.Cap(stage_steps=200_000), pr.MAX_PROBE_SECONDS),
])
def test_rounds_stop_at_the_cap_when_candidates_are_slower_than_the_first(cap, seconds):
    steps = {FP32: [0.5], FP32_CL: [0.5], BF16: [2.0], BF16_CL: [2.0]}
    outcome, _ = probe(EAGER, steps, cap, setup=0.1)
    assert cap.seconds(0.5) == seconds and outcome.note == ""
    assert 1 <= len(outcome.trials[0].rounds) < pr.MAX_ROUNDS
    assert outcome.seconds <= seconds


def test_a_stage_too_short_for_a_probe_keeps_the_simplest_setting_after_two_steps():
    steps = {n: [0.01] for n in EAGER}
    outcome, log = probe(EAGER, steps, pr.Cap(stage_steps=60), setup=0.05)
    assert log == [("start", "fp32"), ("step", "fp32")]
    assert "probe skipped" in outcome.note and outcome.seconds == pytest.approx(0.06)
    assert nm.pick(outcome.trials).chosen == FP32


def test_the_median_of_the_rounds_ignores_one_disturbed_round():
    steps = {**PAPER_STEPS, BF16: [0.5, 0.5, 5.0, 0.5, 0.5, 0.5]}
    outcome, _ = probe(EAGER, steps, pr.Cap(stage_steps=10**9, max_seconds=60.0))
    bf16 = next(t for t in outcome.trials if t.numerics == BF16)
    assert max(bf16.rounds) == 5.0 and bf16.seconds_per_step == 0.5


def test_a_compile_that_does_not_fit_the_cap_is_not_started():
    outcome, log = probe([*EAGER, FP32_COMPILE], PAPER_STEPS, pr.Cap(stage_steps=10**9))
    assert ("start", "fp32+compile") not in log
    assert "fp32+compile" in outcome.note and outcome.seconds <= pr.MAX_PROBE_SECONDS
    fits, log = probe([*EAGER, FP32_COMPILE], PAPER_STEPS,
                      pr.Cap(stage_steps=10**9, max_seconds=1000.0), compile_seconds=30.0)
    assert ("start", "fp32+compile") in log and fits.note == ""


def test_a_tiny_run_plans_no_probe_worth_its_time(tmp_path, monkeypatch):
    monkeypatch.delenv(nm.AUTO_ENV, raising=False)
    monkeypatch.setenv(nm.CACHE_ENV, str(tmp_path / "cache"))
    stage = rc.validate(tiny_recipe(train={"precision": "auto", "memory_format": "auto",
                                           "compile": "auto"})).stages[0]
    plan = plan_stage(stage, 0, PlanContext(PLUGINS, DataCache(CPU), CPU, KChoice(10, "recipe")))
    assert plan.numerics.chosen == FP32 and "probe skipped" in plan.numerics.note
    assert [t.numerics for t in plan.numerics.trials] == [FP32]
    assert not (tmp_path / "cache" / nm.CACHE_FILE).exists()


def test_every_candidate_trains_its_first_batch_on_the_same_views():
    from corekit.runner import StageProbe

    raw = tiny_recipe()
    raw["model"]["backbone"] = {"type": "small_cnn", "width": 8, "out_dim": 16}
    stage = rc.validate(raw).stages[0]
    cache = DataCache(CPU)
    probe = StageProbe(PLUGINS, stage, lambda name: cache(name, 256, 0), CPU)
    losses = []
    for numerics in (FP32, FP32_CL, FP32):
        contender = probe.contender(numerics)
        losses.append(contender.start())
        contender.step()
        contender.close()
    assert losses[0] == losses[2] and losses[1] == pytest.approx(losses[0], rel=1e-5)


@pytest.mark.parametrize("native_bf16", [True, False], ids=["bf16-offered", "bf16-emulated"])
def test_a_resumed_stage_keeps_its_recorded_numerics_where_the_device_offers_them(
        native_bf16, tmp_path, monkeypatch):
    """--resume continues in the numerics the checkpoint was trained in (no probe); on a CPU
    that no longer offers them (bf16 recorded, bf16 emulated here) it probes again."""
    monkeypatch.delenv(nm.AUTO_ENV, raising=False)
    monkeypatch.setenv(nm.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(nm, "cpu_has_native_bf16", lambda: native_bf16)
    stage = rc.validate(tiny_recipe(train={"precision": "auto", "memory_format": "auto",
                                           "compile": False})).stages[0]
    context = PlanContext(PLUGINS, DataCache(CPU), CPU, KChoice(10, "recipe"))
    recorded = attrs.evolve(plan_stage(stage, 0, context),
                            numerics=nm.Decision(BF16_CL, note="recorded"))
    plan = plan_stage(stage, 0, attrs.evolve(context, recorded=recorded))
    if native_bf16:
        assert plan.numerics == recorded.numerics
    else:
        assert plan.numerics.chosen.precision == "fp32" and plan.numerics.note != "recorded"


class CompileProber(CountingProber):
    """bf16 fastest in the rounds; ``torch.compile`` working or not in the one-batch check."""

    def __init__(self, compiles: bool) -> None:
        super().__init__()
        self.compiles, self.checked, self.timed = compiles, [], []

    def check(self, numerics):
        self.checked.append(numerics.label())
        return nm.Trial(numerics, 1.0) if self.compiles else nm.Trial(numerics, error="no C++")

    def rounds(self, options):
        self.timed.append([n.label() for n in options])
        return super().rounds(options)


@pytest.mark.parametrize("mode", ["probe", "simplest"])
@pytest.mark.parametrize("compiles", [True, False], ids=["compiles", "compile-fails"])
def test_an_explicit_compile_with_auto_precision_compiles_the_eager_choice_or_drops_it(
        auto_stage, tmp_path, monkeypatch, mode, compiles):
    """compile = true beside precision/memory_format = "auto": the rest is decided eagerly (bf16
    wins the rounds; simplest mode takes fp32), then that choice is compiled after one checked
    batch, and trains eagerly where torch.compile fails, the decision saying why."""
    if mode == "simplest":
        monkeypatch.setenv(nm.AUTO_ENV, "simplest")
    stage = attrs.evolve(auto_stage, train=attrs.evolve(auto_stage.train, compile=True))
    prober = CompileProber(compiles)
    decision = nm.decide(stage, CPU, (1, 8, 8), prober, nm.DecisionCache(tmp_path / "n.json"))
    eager = BF16 if mode == "probe" else FP32
    assert all("compile" not in label for labels in prober.timed for label in labels)
    assert prober.checked == [attrs.evolve(eager, compile=True).label()]
    if compiles:
        assert decision.chosen == attrs.evolve(eager, compile=True)
    else:
        assert decision.chosen == eager
        assert decision.rejected[f"{eager.label()}+compile"] == "failed: no C++"
