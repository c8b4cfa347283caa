"""One process against ``torchrun --nproc_per_node=2`` (gloo, CPU) on a recipe's digits preset
(issue #32): training throughput and final NMI, seed by seed.

For each seed S: ``deepclust train RECIPE --data digits --set train.seed=S`` on one process
(one thread, pinned to ``--one-cpus``) and ``torchrun --standalone --nproc_per_node=2 -m
corekit.cli train ...`` with the same settings (one thread per process, pinned to
``--two-cpus``). Throughput is the median ``images_per_second`` of ``metrics.jsonl`` over
epochs 2 and later (epoch 1 pays for start-up); NMI is ``final.json``'s. The NMI band of the
issue: the torchrun mean within the one-process mean ± 2 std and never more than 0.02 below
the one-process mean.

    python bench/ddp_scaling.py --recipe cc --seeds 0 1 2

Prints a markdown table and writes JSON (default ``bench/results/ddp_scaling.json``).
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import environment, finish, fmt, load_line, setup, table, write_json  # noqa: E402

BIN = Path(sys.executable).parent
SETTINGS = {"one": "1 process × 1 thread", "two": "torchrun 2 processes × 1 thread"}


def _command(setting: str, recipe: str, seed: int, out: Path, cpus: str,
             extra: list[str]) -> list[str]:
    """The pinned command line of one run."""
    train = ["train", recipe, "--data", "digits", "--no-progress", "--out", str(out),
             "--set", f"train.seed={seed}", *[a for s in extra for a in ("--set", s)]]
    if setting == "one":
        return ["taskset", "-c", cpus, str(BIN / "deepclust"), *train]
    return ["taskset", "-c", cpus, str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2",
            "-m", "corekit.cli", *train]


def _run(setting: str, recipe: str, seed: int, cpus: str, extra: list[str]) -> dict[str, Any]:
    """One run's wall seconds, median training images/s (epochs ≥ 2) and final NMI."""
    with tempfile.TemporaryDirectory(prefix="ddp-scaling-") as tmp:
        out = Path(tmp) / "run"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        subprocess.run(_command(setting, recipe, seed, out, cpus, extra), check=True, env=env,
                       capture_output=True, text=True)
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        final = json.loads((out / "final.json").read_text())
    speeds = [r["images_per_second"] for r in records if r["epoch"] >= 2]
    return {"setting": setting, "seed": seed, "wall_seconds": wall,
            "images_per_second": statistics.median(speeds), "nmi": final["nmi"],
            "epochs": len(records)}


def _band(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std of each setting's NMI and whether torchrun's mean is in the issue's band:
    not below the one-process mean − 2 std, nor more than 0.02 below that mean (above the
    band is no failure)."""
    nmi = {s: [r["nmi"] for r in runs if r["setting"] == s] for s in SETTINGS}
    mean = {s: statistics.mean(v) for s, v in nmi.items()}
    std = {s: statistics.stdev(v) if len(v) > 1 else 0.0 for s, v in nmi.items()}
    low = max(mean["one"] - 2 * std["one"], mean["one"] - 0.02)
    return {"mean": mean, "std": std, "lower_bound": low,
            "upper_bound": mean["one"] + 2 * std["one"],
            "in_band": mean["two"] >= low}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cc")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--one-cpus", default="0")
    parser.add_argument("--two-cpus", default="0,1")
    parser.add_argument("--set", action="append", default=[], dest="extra",
                        help="a recipe override for every run (repeatable)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    setup(1)
    env = environment(recipe=args.recipe, seeds=args.seeds, one_cpus=args.one_cpus,
                      two_cpus=args.two_cpus, overrides=args.extra, backend="gloo")
    runs = [_run(setting, args.recipe, seed, args.one_cpus if setting == "one"
                 else args.two_cpus, args.extra)
            for seed in args.seeds for setting in SETTINGS]
    band = _band(runs)
    path = write_json("ddp_scaling", {"environment": finish(env), "runs": runs, "band": band},
                      args.out)
    print(f"{args.recipe} --data digits, gloo on CPU; {load_line(env)}\n")
    print(table(["setting", "seed", "epochs", "train img/s", "wall s", "NMI"],
                [[SETTINGS[r["setting"]], r["seed"], r["epochs"], fmt(r["images_per_second"]),
                  fmt(r["wall_seconds"]), f"{r['nmi']:.4f}"] for r in runs], "llrrrr"))
    print(f"\nNMI one process {band['mean']['one']:.4f} ± {band['std']['one']:.4f}, torchrun "
          f"{band['mean']['two']:.4f} ± {band['std']['two']:.4f}; band lower bound "
          f"{band['lower_bound']:.4f}: {'in' if band['in_band'] else 'OUT OF'} band")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
