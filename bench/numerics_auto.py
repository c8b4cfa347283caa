"""``train.precision / memory_format = "auto"`` against every fixed setting, per shipped recipe.

For each shipped recipe that trains, at two sizes:

- ``cpu``: its CPU preset (``digits`` where it has one, else ``mnist`` / ``stripe-mnist``), on
  that data where it is here, else noise of its shape;
- ``cifar``: its ``cifar10`` preset, or its top level where it has none, on 3×32×32 noise, at
  batch ``--cifar-batch`` (64: the paper batches would take minutes per step on a CPU);

the fixed settings (fp32, bf16 where native, each contiguous and channels_last; ``--compile``
adds each of them compiled) and the auto choice are timed side by side: ``auto`` decides first
(its own probe, an empty cache), then each setting and the chosen one are timed ``--repeats``
times, interleaved, each repeat a fresh throwaway stage of 1 warm-up + ``--steps`` timed steps
(``corekit.runner.StageProbe.trial``). Reported: median seconds per step, the fastest fixed
setting, the auto choice, auto's time over the fastest fixed one, and the time of the fixed
setting auto chose over the fastest (the same setting timed in the same repeats: where auto
chose a fixed column, the two ratios differ only by timing noise).

    taskset -c 0 python bench/numerics_auto.py [--recipes cc,hadis] [--sizes cpu,cifar]

writes ``bench/results/numerics_auto.json`` and a markdown table.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import environment, finish, load_line, median, noise_set, setup, table, write_json  # noqa: E402,E501
from corekit import recipe as rc  # noqa: E402
from corekit.data import load_dataset  # noqa: E402
from corekit.engine import numerics as nm  # noqa: E402
from corekit.errors import UserError  # noqa: E402
from corekit.plugins import get_plugins  # noqa: E402
from corekit.runner import StageProbe  # noqa: E402

CPU = torch.device("cpu")
CPU_PRESETS = ("digits", "mnist", "stripe-mnist")
SKIP = ("features-kmeans",)  # trains nothing


def shipped(plugins: Any) -> list[str]:
    """Every recipe of the installed plugins that trains, by its short name."""
    names = [name.split(".", 1)[-1] for name in plugins.registry.names("recipe")]
    return [n for n in names if n not in SKIP and plugins.find_recipe(n) is not None]


def stage_for(plugins: Any, recipe: str, size: str, cifar_batch: int) -> tuple[Any, str]:
    """The first training stage of ``recipe`` at ``size`` (a later one may need the outputs of
    the stages before it) and the preset it came from."""
    presets = rc.resolve_raw(recipe, plugins.find_recipe).get("presets", {})
    if size == "cpu":
        preset: str | None = next(p for p in CPU_PRESETS if p in presets)
    else:
        preset = "cifar10" if "cifar10" in presets else None
    overrides = ['train.device="cpu"', "train.checkpoint_every=0", 'train.precision="auto"',
                 'train.memory_format="auto"']
    if size == "cifar" and cifar_batch:
        overrides.append(f"train.batch_size={cifar_batch}")
    stages = rc.resolve(recipe, plugins.find_recipe, preset, overrides).stages
    return next(s for s in stages if s.train.epochs > 0), preset or "top level"


def data_for(stage: Any, size: str) -> Any:
    """The stage's own data where it loads offline (CPU presets), else noise of its shape."""
    if size == "cifar":
        return noise_set(512, 3, 32)
    try:
        return load_dataset(stage.data.name)
    except (UserError, OSError):
        return noise_set(512, 1, 28)


def decisions(plugins: Any, stage: Any, data: Any, count: int) -> list[dict[str, Any]]:
    """``count`` decisions of ``stage``'s auto numerics, each by a fresh probe (its own
    composition, an empty cache): the choice, the probe's own seconds and the wall seconds of
    the whole decision (composition included)."""
    made = []
    for _ in range(count):
        probe = StageProbe(plugins, stage, lambda _name: data, CPU)
        with tempfile.TemporaryDirectory() as cache:
            os.environ[nm.CACHE_ENV] = cache
            t0 = time.perf_counter()
            decision = probe.numerics()
            wall = time.perf_counter() - t0
        made.append({"choice": decision.chosen.label(), "probe_seconds": decision.probe_seconds,
                     "wall_seconds": wall, "probe_batch": probe.probe_batch,
                     "note": decision.note, "decision": decision.to_json()})
    return made


def measure(plugins: Any, recipe: str, size: str, args: argparse.Namespace) -> dict[str, Any]:
    stage, preset = stage_for(plugins, recipe, size, args.cifar_batch)
    data = data_for(stage, size)
    probe = StageProbe(plugins, stage, lambda _name: data, CPU)
    made = decisions(plugins, stage, data, args.decisions)
    decision = nm.Decision.from_json(made[0]["decision"])
    row = {"recipe": recipe, "stage": stage.name, "size": size, "preset": preset,
           "batch": stage.train.batch_size, "backbone": stage.model.backbone.type,
           "view_size": stage.augment.size, "data": data.name, "decisions": made}
    if args.decisions_only:
        return row
    fixed = [n for n in nm.candidates(stage.train, CPU) if not n.compile]
    if args.compile:
        fixed += [attrs.evolve(n, compile=True) for n in fixed]
    seconds: dict[str, list[float]] = {n.label(): [] for n in fixed}
    seconds["auto"] = []
    def time_step(numerics: nm.Numerics) -> float:
        trial = probe.trial(numerics, args.steps)
        return trial.seconds_per_step if trial.error is None else float("nan")

    for _ in range(args.repeats):
        for numerics in fixed:
            seconds[numerics.label()].append(time_step(numerics))
        seconds["auto"].append(time_step(decision.chosen))
    medians = {k: median(v) for k, v in seconds.items()}
    fastest = min((k for k in medians if k != "auto"), key=lambda k: medians[k])
    return row | {"seconds": seconds, "median_seconds": medians, "fastest_fixed": fastest,
                  "auto_choice": decision.chosen.label(),
                  "auto_over_fastest": medians["auto"] / medians[fastest]}


def choice_over_fastest(row: dict[str, Any]) -> float:
    """The median of the fixed setting auto chose over the fastest fixed one's (NaN where the
    choice was not a fixed column)."""
    medians = row["median_seconds"]
    return medians.get(row["auto_choice"], math.nan) / medians[row["fastest_fixed"]]


def decisions_report(rows: list[dict[str, Any]]) -> str:
    body = [[r["recipe"], f"{r['size']} ({r['preset']}, {r['backbone']} "
             f"{r['view_size'] or 'native'} px, b{r['batch']})",
             str(r["decisions"][0]["probe_batch"]),
             ", ".join(d["choice"] for d in r["decisions"]),
             ", ".join(f"{d['probe_seconds']:.1f}" for d in r["decisions"]),
             ", ".join(f"{d['wall_seconds']:.1f}" for d in r["decisions"]),
             "; ".join(sorted({d["note"] for d in r["decisions"] if d["note"]})) or "-"]
            for r in rows]
    return table(["recipe", "stage", "probe batch", "choices", "probe s", "decision wall s",
                  "note"], body)


def report(rows: list[dict[str, Any]]) -> str:
    labels = list(dict.fromkeys(k for r in rows for k in r["median_seconds"] if k != "auto"))
    body = [[r["recipe"], f"{r['size']} ({r['preset']}, {r['backbone']} "
             f"{r['view_size'] or 'native'} px, "
             f"b{r['batch']})",
             *(f"{r['median_seconds'][k] * 1e3:.1f}" if k in r["median_seconds"] else "-"
               for k in labels),
             f"{r['median_seconds']['auto'] * 1e3:.1f}", r["auto_choice"], r["fastest_fixed"],
             f"{r['auto_over_fastest']:.2f}", f"{choice_over_fastest(r):.2f}"] for r in rows]
    return table(["recipe", "stage", *(f"{k} ms" for k in labels), "auto ms", "auto chose",
                  "fastest fixed", "auto / fastest",
                  "its setting / fastest"], body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="", help="comma-separated; default every shipped")
    parser.add_argument("--sizes", default="cpu,cifar")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cifar-batch", type=int, default=64, help="0: the preset's own")
    parser.add_argument("--decisions", type=int, default=1,
                        help="fresh probes per stage (the choice's steadiness)")
    parser.add_argument("--decisions-only", action="store_true",
                        help="only the probes: no fixed settings timed")
    parser.add_argument("--compile", action="store_true",
                        help="add a compiled twin of every fixed setting")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    setup(args.threads)
    plugins = get_plugins()
    env = environment(steps=args.steps, repeats=args.repeats, cifar_batch=args.cifar_batch,
                      decisions=args.decisions, taskset=sorted(os.sched_getaffinity(0)))
    recipes = args.recipes.split(",") if args.recipes else shipped(plugins)
    rows: list[dict[str, Any]] = []
    for recipe in recipes:
        for size in args.sizes.split(","):
            rows.append(measure(plugins, recipe, size, args))
            made = rows[-1]["decisions"]
            choices = ", ".join(d["choice"] for d in made)
            seconds = ", ".join(f"{d['probe_seconds']:.1f}" for d in made)
            print(f"{recipe} {size}: auto chose {choices} in {seconds} s", flush=True)
            payload = finish(dict(env)) | {"rows": rows}  # each row kept if the run is cut
            write_json("numerics_auto", payload, args.out)
    print(load_line(payload))
    print(decisions_report(rows))
    if not args.decisions_only:
        print(report(rows))


if __name__ == "__main__":
    main()
