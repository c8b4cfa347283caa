"""A recipe's training step raced against the authors' own (``cc_step.py``, ``hadis_step.py``).

``StageStep`` runs ``StageTrainer.train_batch`` of a stage; ``race`` interleaves it with the
authors' step on the same batches, one step of each contestant a round in a rotating order,
and ``speed_rows``/``speed_tables`` turn the seconds into the speed-up, its spread over the
rounds, the first-batch loss drift and our step by phase.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from bench.common import (  # noqa: E402
    environment,
    finish,
    load_line,
    median,
    setup,
    table,
    write_json,
)
from corekit.composer import compose  # noqa: E402
from corekit.engine.devices import resolve_precision  # noqa: E402
from corekit.engine.numerics import LOSS_RTOL  # noqa: E402
from corekit.engine.seed import seed_everything  # noqa: E402
from corekit.engine.trainer import MAIN, StageTrainer, StreamBatch  # noqa: E402
from corekit.plugins import get_plugins  # noqa: E402


class StageStep:
    """``StageTrainer.train_batch`` of ``stage`` (its precision and memory format) on batches
    of the given indices of ``data``, the engine's phase timer kept per step; with
    ``compile``, every encoder and head compiled with ``mode`` and ``dynamic``."""

    def __init__(self, data: Any, stage: Any, compile: bool = False, mode: str | None = None,
                 dynamic: bool | None = None) -> None:
        cpu = torch.device("cpu")
        torch.manual_seed(0)
        self.composed = compose(get_plugins(), stage, lambda _n: data, cpu, None, 1)
        network = self.composed.model.online
        if compile:
            for module in [*network.encoders.values(), *network.heads.values()]:
                module.compile(mode=mode, dynamic=dynamic)
        self.folder = tempfile.TemporaryDirectory()
        self.trainer = StageTrainer(self.composed, Path(self.folder.name), cpu,
                                    resolve_precision(stage.train.precision, cpu), 0,
                                    lambda _: None, False)
        network.train()
        self.data, self.generator = data, torch.Generator().manual_seed(0)
        self.phases: list[dict[str, float]] = []

    @property
    def views(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        return list(self.composed.views.values())

    def __call__(self, indices: torch.Tensor) -> float:
        batch = {MAIN: StreamBatch(indices, self.data.batch(indices))}
        loss = float(self.trainer.train_batch(batch, 0, self.generator)["loss"])
        self.phases.append(self.trainer.phases.take())
        return loss


def interleave(contestants: dict[str, Callable[[int], float]], warmup: int,
               rounds: int) -> dict[str, Any]:
    """``warmup`` untimed steps of each contestant (called with the step's index; the first
    one's loss is kept), then ``rounds`` rounds that time one step of every contestant, in an
    order rotated from round to round: first losses, warm-up seconds, seconds per round."""
    first_loss, warmup_seconds = {}, {}
    for name, step in contestants.items():
        t0 = time.perf_counter()
        first_loss[name] = step(0)
        for i in range(1, warmup):
            step(i)
        warmup_seconds[name] = time.perf_counter() - t0
        print(f"{name}: warm-up {warmup_seconds[name]:.1f} s, first loss {first_loss[name]:.4f}",
              flush=True)
    names = list(contestants)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            contestants[name](warmup + r)
            seconds[name].append(time.perf_counter() - t0)
    return {"first_loss": first_loss, "warmup_seconds": warmup_seconds, "seconds": seconds}


def speed_rows(ours: dict[str, StageStep], timed: dict[str, Any], warmup: int,
               reference: str) -> dict[str, Any]:
    """Per setting of ``ours`` (keyed as in ``timed``, the ``interleave`` result, where the
    authors' step is ``authors``): median seconds, the authors' median over ours and its
    spread over the rounds, the first loss against ``reference``'s (allowed within
    ``LOSS_RTOL``), warm-up seconds and the median of each phase."""
    seconds, first_loss = timed["seconds"], timed["first_loss"]
    rows = []
    for label, step in ours.items():
        steps = step.phases[warmup:]
        phases = {name.removeprefix("time_"): median([p.get(name, 0.0) for p in steps])
                  for name in steps[0]}
        per_round = [a / o for a, o in zip(seconds["authors"], seconds[label], strict=True)]
        drift = abs(first_loss[label] - first_loss[reference]) / max(abs(first_loss[reference]),
                                                                    1.0)
        rows.append({"setting": label, "median_seconds": median(seconds[label]),
                     "speedup": median(seconds["authors"]) / median(seconds[label]),
                     "speedup_rounds": per_round, "speedup_min": min(per_round),
                     "speedup_max": max(per_round), "first_loss": first_loss[label],
                     "loss_drift": drift, "allowed": drift <= LOSS_RTOL,
                     "warmup_seconds": timed["warmup_seconds"][label], "phases": phases})
    return {"authors": {"median_seconds": median(seconds["authors"]),
                        "first_loss": first_loss["authors"],
                        "warmup_seconds": timed["warmup_seconds"]["authors"]},
            "seconds": seconds, "rows": rows}


def speed_tables(result: dict[str, Any]) -> str:
    """The ``speed_rows`` result as two markdown tables: the steps, and ours by phase."""
    authors = result["authors"]
    body = [["authors' step (fp32, eager)", f"{authors['median_seconds'] * 1e3:.0f}", "1.00",
             "-", f"{authors['first_loss']:.4f}", "-", f"{authors['warmup_seconds']:.1f}"]]
    body += [[r["setting"], f"{r['median_seconds'] * 1e3:.0f}", f"{r['speedup']:.2f}",
              f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f}", f"{r['first_loss']:.4f}",
              f"{100 * r['loss_drift']:.2f}%{'' if r['allowed'] else ' (not allowed)'}",
              f"{r['warmup_seconds']:.1f}"] for r in result["rows"]]
    names = list(result["rows"][0]["phases"])
    phases = [[r["setting"], *(f"{r['phases'][n] * 1e3:.0f}" for n in names)]
              for r in result["rows"]]
    return (table(["step", "median ms", "authors / ours", "spread over rounds",
                   "first-batch loss", "vs our fp32", "warm-up s"], body)
            + "\n\nOur step by phase (the engine's phase timer, median ms)\n\n"
            + table(["setting", *names], phases))


def race(data: Any, batch: int, authors: Callable[[torch.Tensor], float],
         ours: dict[str, StageStep], warmup: int, rounds: int,
         seed: int | None = None) -> dict[str, Any]:
    """``authors`` (on images) against each of ``ours`` (on indices) on the same shuffled
    batches of ``data``, ``interleave``d, as ``speed_rows`` with ours' first setting the loss
    reference. With ``seed``, the global random state is reseeded before each contestant's
    first step (for views that draw from it, so every first batch gets the same views)."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
    batches = [order[i * batch:(i + 1) * batch] for i in range(len(data) // batch)]

    def contestant(step: Callable[[torch.Tensor], float]) -> Callable[[int], float]:
        def call(i: int) -> float:
            if i == 0 and seed is not None:
                seed_everything(seed)
            return step(batches[i % len(batches)])

        return call

    contestants = {"authors": contestant(lambda idx: authors(data.batch(idx))),
                   **{label: contestant(step) for label, step in ours.items()}}
    return speed_rows(ours, interleave(contestants, warmup, rounds), warmup, next(iter(ours)))


def run_bench(name: str, args: Any, run: Callable[[Any], dict[str, Any]],
              report: Callable[[dict[str, Any], Any], str], **extra: Any) -> None:
    """``run(args)`` on ``args.threads`` torch threads, its result with the machine record
    (``environment``/``finish``) written to ``args.out`` or ``bench/results/<name>.json``,
    then the load line and ``report(result, args)`` printed."""
    setup(args.threads)
    env = environment(script=name, taskset=sorted(os.sched_getaffinity(0)), **extra)
    result = run(args)
    payload = finish(env) | result
    path = write_json(name, payload, args.out)
    print(load_line(payload))
    print(report(result, args))
    print(f"wrote {path}")


def race_parser(doc: str, settings: list[str], settings_help: str, images: int,
                rounds: int) -> Any:
    """The options of a ``race`` bench: ``--settings`` of ours, ``--batch``, ``--images``,
    ``--warmup``, ``--rounds``, ``--threads`` and ``--out``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=settings, help=settings_help)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--images", type=int, default=images)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    return parser
