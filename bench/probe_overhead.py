"""What the numerics probe adds to a small run: ``deepclust train RECIPE --data digits``, with
``auto`` numerics probed (the default, an empty cache each run) against
``DEEPCLUST_AUTO_NUMERICS=simplest`` (no probe), interleaved, each run its own process.

Reported per recipe: the median wall seconds of each mode, their difference, and the probe's
own seconds and note from the probed runs' ``plan.json`` (a run this short keeps fp32 after the
probe's first two steps: "probe skipped").

    taskset -c 1 python bench/probe_overhead.py --recipes cc hadis --runs 3

writes ``bench/results/probe_overhead.json`` and a markdown table.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import environment, finish, load_line, median, table, write_json  # noqa: E402

MODES = {"probe": "probe", "no probe": "simplest"}


def one_run(recipe: str, mode: str, folder: Path) -> dict[str, Any]:
    """One ``deepclust train`` of ``recipe``'s digits preset in ``mode``: its wall seconds and,
    from its first stage's plan, the numerics decision."""
    env = {**os.environ, "DEEPCLUST_AUTO_NUMERICS": MODES[mode],
           "DEEPCLUST_CACHE_DIR": str(folder / "cache")}
    out = folder / "run"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "corekit.cli", "train", recipe, "--data", "digits",
                    "--out", str(out), "--no-progress"], env=env, check=True,
                   capture_output=True)
    wall = time.perf_counter() - t0
    plan = json.loads(next((out / "stages").glob("*/plan.json")).read_text())["numerics"]
    return {"wall_seconds": wall, "choice": plan["chosen"], "probe_seconds": plan["probe_seconds"],
            "note": plan["note"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["cc", "hadis"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    env = environment(script="probe_overhead", runs=args.runs,
                      taskset=sorted(os.sched_getaffinity(0)))
    rows = []
    for recipe in args.recipes:
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for index in range(args.runs):
            for mode in (list(MODES) if index % 2 == 0 else list(MODES)[::-1]):
                with tempfile.TemporaryDirectory() as tmp:
                    runs[mode].append(one_run(recipe, mode, Path(tmp)))
        walls = {mode: median([r["wall_seconds"] for r in rs]) for mode, rs in runs.items()}
        rows.append({"recipe": recipe, "runs": runs, "median_wall_seconds": walls,
                     "added_seconds": walls["probe"] - walls["no probe"]})
        print(f"{recipe}: {walls}", flush=True)
    payload = finish(env) | {"rows": rows}
    path = write_json("probe_overhead", payload, args.out)
    body = [[r["recipe"], f"{r['median_wall_seconds']['no probe']:.1f}",
             f"{r['median_wall_seconds']['probe']:.1f}", f"{r['added_seconds']:+.1f}",
             ", ".join(f"{x['probe_seconds']:.2f}" for x in r["runs"]["probe"]),
             r["runs"]["probe"][0]["note"] or "-"] for r in rows]
    print(load_line(payload))
    print(table(["recipe (digits)", "wall s, no probe", "wall s, probe", "added s",
                 "probe s (each run)", "note"], body))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
