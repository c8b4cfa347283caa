"""Numerics chosen by measurement: ``train.precision``, ``train.memory_format`` and
``train.compile`` set to ``"auto"``.

No fixed rule picks the fastest numerics on every machine: on one CPU with native bf16, bf16 +
channels_last made HaDis's step 3.9x faster than fp32 while CC's step, whose ImageNet stem
leaves tiny feature maps, ran slower in bf16 (0.87x); a CPU without bf16 emulates it 100x
slower. So each ``"auto"`` setting is decided at stage start: every candidate (the product of
the auto settings' choices, explicit settings held fixed) trains a few real steps on a
throwaway copy of the composed stage, the same model, batch and views; the fastest candidate
that is numerically safe wins. Safe means a finite loss on every timed step and, on the first
batch (the same images and views for every candidate), a loss within ``LOSS_RTOL`` of the
full-precision candidate's. The decision is cached per (machine, torch, threads, stage) in
``numerics.json`` under the cache directory, so later runs of the same stage skip the probe;
each stage's decision and the timings are part of its plan (``stages/NAME/plan.json``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from corekit import recipe as rc
from corekit.engine.devices import cpu_flags, cpu_has_native_bf16
from corekit.network import Network

LOSS_RTOL = 0.05  # first-batch loss of a candidate vs full precision, relative (floor 1)
CACHE_ENV = "DEEPCLUST_CACHE_DIR"
CACHE_FILE = "numerics.json"
_KEY_VERSION = 1


@attrs.frozen
class Numerics:
    """One setting of the three numerics options, every one explicit (no ``"auto"``)."""

    precision: rc.FixedPrecision = "fp32"
    memory_format: rc.FixedMemoryFormat = "contiguous"
    compile: bool = False

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
    """What a candidate did on the probe: its first-batch loss and seconds per timed step, or
    why it could not train (``error``)."""

    numerics: Numerics
    first_loss: float = math.nan
    seconds_per_step: float = math.inf
    finite: bool = True
    error: str | None = None


@attrs.frozen
class Decision:
    """The chosen numerics, every trial and why any candidate was set aside."""

    chosen: Numerics
    trials: tuple[Trial, ...] = ()
    rejected: dict[str, str] = attrs.field(factory=dict)
    cached: bool = False

    def describe(self) -> str:
        """One line: the choice, then each candidate's time per step."""
        if not self.trials:
            return f"numerics {self.chosen.label()}"
        timings = ", ".join(
            f"{t.numerics.label()} {t.seconds_per_step * 1e3:.1f} ms" if t.error is None
            and t.numerics.label() not in self.rejected else
            f"{t.numerics.label()} {self.rejected.get(t.numerics.label(), t.error)}"
            for t in self.trials)
        return (f"numerics auto -> {self.chosen.label()} ({timings} per step"
                f"{'; cached decision' if self.cached else ''})")

    def to_json(self) -> dict[str, Any]:
        return {"chosen": attrs.asdict(self.chosen), "cached": self.cached,
                "rejected": self.rejected,
                "trials": [{**attrs.asdict(t, recurse=False), "numerics": t.numerics.label()}
                           | {"seconds_per_step": _number(t.seconds_per_step),
                              "first_loss": _number(t.first_loss)} for t in self.trials]}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Decision:
        def trial(entry: dict[str, Any]) -> Trial:
            numerics = _parse_label(entry["numerics"])
            return Trial(numerics, _float(entry["first_loss"]), _float(entry["seconds_per_step"]),
                         bool(entry["finite"]), entry["error"])

        return cls(Numerics(**payload["chosen"]), tuple(trial(t) for t in payload["trials"]),
                   dict(payload["rejected"]), cached=True)


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _parse_label(label: str) -> Numerics:
    parts = label.split("+")
    return Numerics(precision=parts[0],  # type: ignore[arg-type]
                    memory_format="channels_last" if "channels_last" in parts else "contiguous",
                    compile="compile" in parts)


def is_auto(train: rc.Train) -> bool:
    """Whether any numerics option of ``train`` is ``"auto"``."""
    return "auto" in (train.precision, train.memory_format, train.compile)


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


def pick(trials: Sequence[Trial], rtol: float = LOSS_RTOL) -> Decision:
    """The fastest safe trial. The reference loss is that of the first trial (the
    full-precision candidate where it was allowed). A trial is set aside when it failed, had a
    non-finite loss, or its first-batch loss differs from the reference by more than
    ``rtol · max(|reference|, 1)``; if every trial is set aside the first candidate is kept."""
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
    safe = [t for t in trials if t.numerics.label() not in rejected]
    chosen = min(safe, key=lambda t: t.seconds_per_step).numerics if safe else trials[0].numerics
    return Decision(chosen, tuple(trials), rejected)


def cache_key(stage: rc.Stage, device: torch.device, image_shape: Sequence[int]) -> str:
    """What the decision depends on: the machine (CPU model and flags, or the GPU's name), torch
    and its thread count, the device, the image shape and everything of ``stage`` that shapes a
    step (model, views, losses, state, batch, optimizer, the numerics options asked for), but
    not its length, seed, budget or data set name."""
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.processor() or platform.machine()} {sorted(cpu_flags())}")
    train = stage.train
    step = {"model": attrs.asdict(stage.model), "augment": attrs.asdict(stage.augment),
            "losses": {n: attrs.asdict(loss) for n, loss in stage.losses.items()},
            "state": {n: attrs.asdict(s) for n, s in stage.state.items()},
            "batch_size": train.batch_size, "optimizer": attrs.asdict(train.optimizer),
            "numerics": [train.precision, train.memory_format, train.compile],
            "grad_clip": train.grad_clip, "freeze": train.freeze}
    text = json.dumps([_KEY_VERSION, machine, torch.__version__, torch.get_num_threads(),
                       device.type, list(image_shape), step], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_dir() -> Path:
    """``$DEEPCLUST_CACHE_DIR``, else ``$XDG_CACHE_HOME/deepclust`` or ``~/.cache/deepclust``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepclust"


class DecisionCache:
    """Decisions by ``cache_key`` in one JSON file; an unreadable or unwritable cache is treated
    as empty (a probe runs again), never as an error."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / CACHE_FILE

    def _entries(self) -> dict[str, Any]:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> Decision | None:
        entry = self._entries().get(key)
        try:
            return Decision.from_json(entry) if entry is not None else None
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, decision: Decision) -> None:
        entries = self._entries()
        entries[key] = decision.to_json()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.path.with_suffix(f".{os.getpid()}.tmp")
            scratch.write_text(json.dumps(entries, indent=1))
            scratch.replace(self.path)
        except OSError:
            return


def decide(stage: rc.Stage, device: torch.device, image_shape: Sequence[int],
           measure: Callable[[Numerics], Trial], cache: DecisionCache | None = None) -> Decision:
    """The numerics for ``stage``. None ``"auto"``: its own, except that an explicit
    ``compile = true`` is first tried on one batch and, where ``torch.compile`` fails, dropped
    (the decision's ``rejected`` says why). Otherwise the cached decision for this machine and
    stage, else a probe of every candidate with ``measure``."""
    if not is_auto(stage.train):
        fixed = candidates(stage.train, device)[0]
        if not fixed.compile:
            return Decision(fixed)
        check = measure(fixed)
        if check.error is None:
            return Decision(fixed, (check,))
        return Decision(attrs.evolve(fixed, compile=False), (check,),
                        {fixed.label(): f"failed: {check.error}"})
    cache = cache or DecisionCache()
    key = cache_key(stage, device, image_shape)
    cached = cache.get(key)
    if cached is not None:
        return cached
    options = candidates(stage.train, device)
    decision = pick([measure(numerics) for numerics in options]) if len(options) > 1 else \
        Decision(options[0])
    cache.put(key, decision)
    return decision
