"""Numerics candidates timed against each other: interleaved in rounds, under a time cap.

The first candidate (the simplest: fp32, contiguous, eager) is started and timed on one step;
that step time sizes the rest. The cap is ``PROBE_SHARE`` of the stage's time (its share of a
``--budget``, else its steps at that pace) and at most ``MAX_PROBE_SECONDS``. Where even
``MIN_ROUNDS`` rounds of every eager candidate would not fit, the probe stops there and the
first candidate stands (a stage of a few seconds is not worth a probe). Otherwise each other
candidate is started (its first batch untimed: one-off work such as oneDNN's kernel choice),
then rounds run, each timing every candidate for the same steps, in an order rotated from
round to round, until ``MAX_ROUNDS`` or the cap; each candidate's time is the median of its
rounds. Compiled candidates are started only where ``COMPILE_SECONDS`` (a lower bound of what
compiling a step takes on a CPU: 106 s for CC's parts on the EPYC of docs/benchmarks.md) fits
in what is left of the cap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from corekit.engine.numerics import Numerics, Outcome, Trial
from corekit.errors import NonFiniteLoss

MAX_PROBE_SECONDS = 20.0
PROBE_SHARE = 0.05
MIN_ROUNDS = 2
MAX_ROUNDS = 5
MIN_ROUND_SECONDS = 0.05  # a round times enough steps of each candidate to last this long ...
MAX_ROUND_STEPS = 8  # ... up to this many
COMPILE_SECONDS = 60.0  # CC at 32 px: 106 s to compile (bench/results/cc_step_compile.json)
FAILURES = (NonFiniteLoss, RuntimeError, TypeError, ValueError, AssertionError, OSError)


class Contender(Protocol):
    """One candidate on a throwaway copy of the stage."""

    def start(self) -> float:
        """Build the copy and train its first batch; that batch's loss."""

    def step(self) -> float:
        """Train one more batch; its loss."""


@attrs.frozen
class Cap:
    """How long a probe may take: ``share`` of the stage's seconds and at most
    ``max_seconds``. The stage's seconds are ``stage_seconds`` (its share of a budget) where
    given, else ``stage_steps`` at the first candidate's pace, times ``step_scale`` (the
    stage's batch over the probe's)."""

    stage_steps: int
    stage_seconds: float | None = None
    step_scale: float = 1.0
    share: float = PROBE_SHARE
    max_seconds: float = MAX_PROBE_SECONDS

    def seconds(self, step_seconds: float) -> float:
        """The cap, given the first candidate's seconds per probe step."""
        stage = (self.stage_seconds if self.stage_seconds is not None
                 else self.stage_steps * step_seconds * self.step_scale)
        return min(self.max_seconds, self.share * stage)


def steps_per_round(step_seconds: float) -> int:
    """Steps of each candidate in a round: enough to last ``MIN_ROUND_SECONDS``."""
    wanted = math.ceil(MIN_ROUND_SECONDS / max(step_seconds, 1e-6))
    return max(1, min(MAX_ROUND_STEPS, wanted))


def failure(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters of it)."""
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


@attrs.define
class _Entry:
    numerics: Numerics
    contender: Contender | None = None
    first_loss: float = math.nan
    rounds: list[float] = attrs.field(factory=list)
    finite: bool = True
    error: str | None = None

    def start(self, open_: Callable[[Numerics], Contender]) -> bool:
        try:
            self.contender = open_(self.numerics)
            self.first_loss = self.contender.start()
        except NonFiniteLoss:
            self.finite = False
        except FAILURES as exc:
            self.error = failure(exc)
        return self.live

    @property
    def live(self) -> bool:
        return self.error is None and self.finite and self.contender is not None

    def time(self, steps: int, clock: Callable[[], float]) -> None:
        assert self.contender is not None
        t0 = clock()
        try:
            losses = [self.contender.step() for _ in range(steps)]
        except NonFiniteLoss:
            self.finite = False
            return
        except FAILURES as exc:
            self.error = failure(exc)
            return
        self.rounds.append((clock() - t0) / steps)
        self.finite = self.finite and all(map(math.isfinite, losses))

    def trial(self) -> Trial:
        if self.error is not None:
            return Trial(self.numerics, error=self.error, rounds=tuple(self.rounds))
        return Trial.timed(self.numerics, self.first_loss, self.rounds, self.finite)


def interleave(options: Sequence[Numerics], open_: Callable[[Numerics], Contender], cap: Cap,
               clock: Callable[[], float] = time.perf_counter, spent: float = 0.0) -> Outcome:
    """``options`` (the simplest first) timed in rounds by contenders from ``open_``, within
    ``cap`` (module docstring), ``spent`` seconds of it already gone (composing the stage the
    contenders copy)."""
    t0 = clock() - spent
    entries = [_Entry(n) for n in options]
    first = entries[0]
    if not first.start(open_):
        return Outcome(tuple(e.trial() for e in entries[:1]), clock() - t0,
                       "the first candidate failed; nothing else tried")
    first.time(1, clock)
    if not first.live:
        return Outcome((first.trial(),), clock() - t0)
    setup, step = clock() - t0 - spent, first.rounds[-1]
    limit = cap.seconds(step)
    per_round = steps_per_round(step)
    eager = [e for e in entries if not e.numerics.compile]
    planned = (len(eager) - 1) * setup + MIN_ROUNDS * len(eager) * per_round * step
    if clock() - t0 + planned > limit:
        return Outcome((first.trial(),), clock() - t0,
                       f"probe skipped: {len(eager)} candidates x {MIN_ROUNDS} rounds would take "
                       f"about {planned:.1f} s, over its cap of {limit:.1f} s")
    first.rounds.clear()
    left_out = []
    for entry in entries[1:]:
        needed = COMPILE_SECONDS if entry.numerics.compile else setup
        if clock() - t0 + needed > limit:
            left_out.append(entry)
            continue
        entry.start(open_)
    started = [e for e in entries if e not in left_out]
    for index in range(MAX_ROUNDS):
        live = [e for e in started if e.live]
        if not live:
            break
        round_started = clock()
        shift = index % len(live)
        for entry in live[shift:] + live[:shift]:
            entry.time(per_round, clock)
        if index + 1 < MAX_ROUNDS and clock() - t0 + (clock() - round_started) > limit:
            break
    note = (f"not tried within the probe's cap of {limit:.1f} s: "
            f"{', '.join(e.numerics.label() for e in left_out)}") if left_out else ""
    return Outcome(tuple(e.trial() for e in started), clock() - t0, note)
