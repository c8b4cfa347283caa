"""Numerics chosen by measurement: ``train.precision``, ``train.memory_format`` and
``train.compile`` set to ``"auto"`` (the default of all three).

No fixed rule picks the fastest numerics on every machine: on one CPU with native bf16, bf16 +
channels_last made HaDis's step 3.9x faster than fp32 while CC's step, whose ImageNet stem
leaves tiny feature maps, ran slower in bf16 (0.87x); a CPU without bf16 emulates it 100x
slower (so bf16 is then never tried). So each ``"auto"`` setting is decided at stage start:
every candidate (the product of the auto settings' choices, explicit settings held fixed)
trains real steps on a throwaway copy of the composed stage, the same model and views at a
probe batch (``corekit.engine.probe_rounds``: the candidates interleaved in rounds, the median
of each taken, the whole probe capped at ``PROBE_SHARE`` of the stage's time and
``MAX_PROBE_SECONDS``). Of the candidates that are numerically safe, :func:`choose` keeps the
simplest of those within ``TIE`` of the fastest. Safe means a finite loss on every timed step
and, on the first batch (the same images and views for every candidate), a loss within
``LOSS_RTOL`` of the full-precision candidate's.

The decision is cached per stage in ``numerics.json`` under the cache directory, with the
machine, CPU flags, torch version, threads and shapes it was made for (:class:`ProbeContext`):
a later run of the same stage reuses it, and redoes it when any of those changed. Each stage's
decision and its trial times are part of its plan (``stages/NAME/plan.json``).
``DEEPCLUST_AUTO_NUMERICS=simplest`` resolves every ``"auto"`` to its simplest choice (fp32,
contiguous, eager) with no probe: the test suite runs so, for numbers that do not depend on
the machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs
import torch

from corekit import recipe as rc
from corekit.engine.devices import cpu_flags, cpu_has_native_bf16, cpu_model
from corekit.network import Network

LOSS_RTOL = 0.05  # first-batch loss of a candidate vs full precision, relative (floor 1)
TIE = 0.03  # candidates within 3% of the fastest are a tie, won by the simplest
CACHE_ENV = "DEEPCLUST_CACHE_DIR"
CACHE_FILE = "numerics.json"
AUTO_ENV = "DEEPCLUST_AUTO_NUMERICS"
AutoMode = Literal["probe", "simplest"]
_KEY_VERSION = 2
_PRECISION_RANK = {"fp32": 0, "bf16": 1, "fp16": 2}


@attrs.frozen
class Numerics:
    """One setting of the three numerics options, every one explicit (no ``"auto"``)."""

    precision: rc.FixedPrecision = "fp32"
    memory_format: rc.FixedMemoryFormat = "contiguous"
    compile: bool = False

    def complexity(self) -> tuple[int, int, int]:
        """How far from the plain setting, for ties: compiling weighs most, then a lower
        precision (it changes the numbers), then channels_last; (0, 0, 0) is fp32,
        contiguous, eager."""
        return (int(self.compile), _PRECISION_RANK[self.precision],
                int(self.memory_format == "channels_last"))

    @classmethod
    def from_label(cls, label: str) -> Numerics:
        """The numerics of a :meth:`label` (``bf16+channels_last``, ``fp32+compile``, ...)."""
        parts = label.split("+")
        return cls(precision=parts[0],  # type: ignore[arg-type]
                   memory_format="channels_last" if "channels_last" in parts else "contiguous",
                   compile="compile" in parts)

    def label(self) -> str:
        """``fp32``, ``bf16+channels_last``, ``fp32+compile``, ..."""
        extras = [self.memory_format] if self.memory_format != "contiguous" else []
        return "+".join([self.precision, *extras, *(["compile"] if self.compile else [])])

    def apply(self, stage: rc.Stage) -> rc.Stage:
        """``stage`` with these settings in place of its ``train`` numerics."""
        return attrs.evolve(stage, train=attrs.evolve(
            stage.train, precision=self.precision, memory_format=self.memory_format,
            compile=self.compile))

    def prepare(self, network: Network) -> None:
        """Put ``network`` (on its device, its EMA copies already made) in this memory format
        and compile its parts in place where asked."""
        prepare_network(network, self.memory_format, self.compile)


def prepare_network(network: Network, memory_format: rc.MemoryFormat,
                    compile: bool | Literal["auto"]) -> None:
    """The network-side numerics of a stage: ``channels_last`` moves every parameter to that
    layout; ``compile = true`` compiles every encoder and head in place (``"auto"`` settings
    are decided before, so they leave the network as it is)."""
    if memory_format == "channels_last":
        network.to(memory_format=torch.channels_last)
    if compile is True:
        network.compile_parts()


@attrs.frozen
class Trial:
    """What a candidate did on the probe: its first-batch loss, the seconds per step of each
    round (``rounds``) and their median, or why it could not train (``error``)."""

    numerics: Numerics
    first_loss: float = math.nan
    seconds_per_step: float = math.inf
    finite: bool = True
    error: str | None = None
    rounds: tuple[float, ...] = ()

    @classmethod
    def timed(cls, numerics: Numerics, first_loss: float, rounds: Sequence[float],
              finite: bool = True) -> Trial:
        """A trial whose seconds per step is the median of its ``rounds``."""
        return cls(numerics, first_loss, statistics.median(rounds) if rounds else math.inf,
                   finite, None, tuple(rounds))


@attrs.frozen
class Outcome:
    """What a probe of several candidates gave: their trials, its wall seconds and a note of
    what it left out (a skipped probe, candidates not tried for time)."""

    trials: tuple[Trial, ...]
    seconds: float = 0.0
    note: str = ""

    @property
    def compared(self) -> bool:
        """Whether at least two candidates were timed (a decision worth caching)."""
        return sum(t.error is None and bool(t.rounds) for t in self.trials) >= 2


@attrs.frozen
class Decision:
    """The chosen numerics, every trial, why any candidate was set aside, what the probe left
    out (``note``) and how long it took."""

    chosen: Numerics
    trials: tuple[Trial, ...] = ()
    rejected: dict[str, str] = attrs.field(factory=dict)
    cached: bool = False
    note: str = ""
    probe_seconds: float = 0.0

    def describe(self) -> str:
        """One line: the choice, then each candidate's time per step."""
        note = f"; {self.note}" if self.note else ""
        if not self.trials:
            return f"numerics {self.chosen.label()}{note}"
        timings = ", ".join(
            f"{t.numerics.label()} {t.seconds_per_step * 1e3:.1f} ms" if t.error is None
            and t.numerics.label() not in self.rejected else
            f"{t.numerics.label()} {self.rejected.get(t.numerics.label(), t.error)}"
            for t in self.trials)
        rounds = max((len(t.rounds) for t in self.trials), default=0)
        return (f"numerics auto -> {self.chosen.label()} ({timings} per step, median of "
                f"{rounds} round(s); probe {self.probe_seconds:.1f} s{note}"
                f"{'; cached decision' if self.cached else ''})")

    def to_json(self) -> dict[str, Any]:
        return {"chosen": attrs.asdict(self.chosen), "cached": self.cached,
                "rejected": self.rejected, "note": self.note,
                "probe_seconds": self.probe_seconds,
                "trials": [{**attrs.asdict(t, recurse=False), "numerics": t.numerics.label()}
                           | {"seconds_per_step": _number(t.seconds_per_step),
                              "first_loss": _number(t.first_loss), "rounds": list(t.rounds)}
                           for t in self.trials]}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Decision:
        def trial(entry: Mapping[str, Any]) -> Trial:
            numerics = Numerics.from_label(entry["numerics"])
            return Trial(numerics, _float(entry["first_loss"]), _float(entry["seconds_per_step"]),
                         bool(entry["finite"]), entry["error"],
                         tuple(float(r) for r in entry.get("rounds", ())))

        return cls(Numerics(**payload["chosen"]), tuple(trial(t) for t in payload["trials"]),
                   dict(payload["rejected"]), cached=True, note=str(payload.get("note", "")),
                   probe_seconds=float(payload.get("probe_seconds", 0.0)))


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def auto_mode() -> AutoMode:
    """``$DEEPCLUST_AUTO_NUMERICS``: ``"probe"`` (the default) or ``"simplest"``."""
    return "simplest" if os.environ.get(AUTO_ENV, "").strip() == "simplest" else "probe"


def precisions(device: torch.device) -> list[rc.FixedPrecision]:
    """The autocast precisions worth trying on ``device``: fp32, bf16 where it runs natively
    (a CUDA device with bf16, a CPU with bf16 instructions; emulated bf16 is never a
    candidate), fp16 on CUDA."""
    if device.type == "cuda":
        return ["fp32", *(["bf16"] if torch.cuda.is_bf16_supported() else []), "fp16"]
    return ["fp32", *(["bf16"] if device.type == "cpu" and cpu_has_native_bf16() else [])]


def candidates(train: rc.Train, device: torch.device) -> list[Numerics]:
    """Every combination of the ``"auto"`` options' choices, explicit options held fixed; the
    full-precision, contiguous, eager candidate (when allowed) first."""
    chosen_precisions = precisions(device) if train.precision == "auto" else [train.precision]
    formats = (["contiguous", "channels_last"] if train.memory_format == "auto"
               else [train.memory_format])
    compiles = [False, True] if train.compile == "auto" else [bool(train.compile)]
    return [Numerics(p, m, c) for p in chosen_precisions for m in formats for c in compiles]


def choose(seconds: Sequence[tuple[Numerics, float]], tie: float = TIE) -> Numerics:
    """Of ``(numerics, seconds per step)`` pairs, the simplest (:meth:`Numerics.complexity`)
    whose time is within ``tie`` of the fastest: settings that close are a tie, and the
    simpler one wins it, so noise between near-equal settings does not flip the choice."""
    fastest = min(s for _, s in seconds)
    tied = [n for n, s in seconds if s <= fastest * (1 + tie)]
    return min(tied, key=Numerics.complexity)


def pick(trials: Sequence[Trial], rtol: float = LOSS_RTOL, tie: float = TIE) -> Decision:
    """The choice among the safe trials (:func:`choose`). The reference loss is that of the
    first trial (the full-precision candidate where it was allowed). A trial is set aside when
    it failed, had a non-finite loss, or its first-batch loss differs from the reference by
    more than ``rtol · max(|reference|, 1)``; if every trial is set aside the first candidate
    is kept."""
    reference = trials[0].first_loss
    rejected: dict[str, str] = {}
    for trial in trials:
        label = trial.numerics.label()
        if trial.error is not None:
            rejected[label] = f"failed: {trial.error}"
        elif not trial.finite or not math.isfinite(trial.first_loss):
            rejected[label] = "non-finite loss"
        elif math.isfinite(reference) and abs(trial.first_loss - reference) > rtol * max(
                abs(reference), 1.0):
            rejected[label] = (f"first-batch loss {trial.first_loss:.4g} vs "
                               f"{reference:.4g} in {trials[0].numerics.label()}")
    safe = [(t.numerics, t.seconds_per_step) for t in trials
            if t.numerics.label() not in rejected]
    chosen = choose(safe, tie) if safe else trials[0].numerics
    return Decision(chosen, tuple(trials), rejected)


@attrs.frozen
class ProbeContext:
    """What a cached decision was made for: the machine (CPU model, or the GPU's name), the
    CPU's flags, torch's version and thread count, the image shape and the batch. A cached
    decision whose context differs from the present one is made again."""

    machine: str
    cpu_flags: tuple[str, ...]
    torch: str
    threads: int
    image_shape: tuple[int, ...]
    batch_size: int

    @classmethod
    def of(cls, stage: rc.Stage, device: torch.device,
           image_shape: Sequence[int]) -> ProbeContext:
        """The present context of ``stage`` on ``device`` for images of ``image_shape``."""
        machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else cpu_model())
        return cls(machine, tuple(sorted(cpu_flags())), torch.__version__,
                   torch.get_num_threads(), tuple(image_shape), stage.train.batch_size)

    def to_json(self) -> dict[str, Any]:
        """The context as the cache file keeps it (lists for tuples)."""
        return {**attrs.asdict(self), "cpu_flags": list(self.cpu_flags),
                "image_shape": list(self.image_shape)}


def cache_key(stage: rc.Stage, device: torch.device, image_shape: Sequence[int]) -> str:
    """Which stage a decision is for: the device, the image shape and everything of ``stage``
    that shapes a step (model, views, losses, state, batch, optimizer, the numerics options
    asked for), but not its length, seed, budget or data set name. The machine and torch are
    the entry's :class:`ProbeContext`, checked on reading it."""
    train = stage.train
    step = {"model": attrs.asdict(stage.model), "augment": attrs.asdict(stage.augment),
            "losses": {n: attrs.asdict(loss) for n, loss in stage.losses.items()},
            "state": {n: attrs.asdict(s) for n, s in stage.state.items()},
            "batch_size": train.batch_size, "optimizer": attrs.asdict(train.optimizer),
            "streams": {n: attrs.asdict(s) for n, s in train.stream_specs().items()},
            "numerics": [train.precision, train.memory_format, train.compile],
            "grad_clip": train.grad_clip, "freeze": train.freeze}
    text = json.dumps([_KEY_VERSION, device.type, list(image_shape), step], sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_dir() -> Path:
    """``$DEEPCLUST_CACHE_DIR``, else ``$XDG_CACHE_HOME/deepclust`` or ``~/.cache/deepclust``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepclust"


class DecisionCache:
    """Decisions by ``cache_key`` in one JSON file, each with the :class:`ProbeContext` it was
    made for; an unreadable or unwritable cache is treated as empty (a probe runs again), never
    as an error."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / CACHE_FILE

    def _entries(self) -> dict[str, Any]:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str, context: ProbeContext) -> Decision | None:
        """The decision kept under ``key`` if it was made in ``context``, else None."""
        entry = self._entries().get(key)
        try:
            if entry is None or entry["context"] != context.to_json():
                return None
            return Decision.from_json(entry["decision"])
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, context: ProbeContext, decision: Decision) -> None:
        entries = self._entries()
        entries[key] = {"context": context.to_json(), "decision": decision.to_json()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.path.with_suffix(f".{os.getpid()}.tmp")
            scratch.write_text(json.dumps(entries, indent=1))
            scratch.replace(self.path)
        except OSError:
            return


class Prober(Protocol):
    """What :func:`decide` measures with (``corekit.runner.StageProbe``)."""

    def check(self, numerics: Numerics) -> Trial:
        """``numerics`` trained on one batch: its loss, or why it failed."""

    def rounds(self, options: Sequence[Numerics]) -> Outcome:
        """``options`` timed against each other (``corekit.engine.probe_rounds``)."""


def with_compile(decision: Decision, prober: Prober) -> Decision:
    """``decision`` with its choice compiled where ``torch.compile`` trains one batch of it,
    else eager, its ``rejected`` saying why."""
    compiled = attrs.evolve(decision.chosen, compile=True)
    check = prober.check(compiled)
    trials = (*decision.trials, check)
    if check.error is None:
        return attrs.evolve(decision, chosen=compiled, trials=trials)
    return attrs.evolve(decision, trials=trials,
                        rejected={**decision.rejected, compiled.label(): f"failed: {check.error}"})


def decide(stage: rc.Stage, device: torch.device, image_shape: Sequence[int], prober: Prober,
           cache: DecisionCache | None = None) -> Decision:
    """The numerics for ``stage``. An explicit ``compile = true``: the rest decided eagerly,
    then the choice compiled (:func:`with_compile`). None ``"auto"``: its own. Otherwise the
    simplest candidate where ``$DEEPCLUST_AUTO_NUMERICS`` is ``simplest``, else the cached
    decision for this stage if it was made in the present :class:`ProbeContext`, else a probe
    of every candidate (cached where it compared at least two)."""
    if stage.train.compile is True:
        eager = attrs.evolve(stage, train=attrs.evolve(stage.train, compile=False))
        return with_compile(decide(eager, device, image_shape, prober, cache), prober)
    options = candidates(stage.train, device)
    if len(options) == 1:
        return Decision(options[0])
    if auto_mode() == "simplest":
        return Decision(min(options, key=Numerics.complexity),
                        note=f"{AUTO_ENV}=simplest, no probe")
    cache = cache or DecisionCache()
    key, context = cache_key(stage, device, image_shape), ProbeContext.of(stage, device,
                                                                           image_shape)
    cached = cache.get(key, context)
    if cached is not None:
        return cached
    outcome = prober.rounds(options)
    decision = attrs.evolve(pick(outcome.trials), note=outcome.note,
                            probe_seconds=outcome.seconds)
    if outcome.compared:
        cache.put(key, context, decision)
    return decision
