"""Start-up time of the ``deepclust`` command (issue #23).

Each command runs as its own process, the installed ``deepclust`` console script, with its
output discarded: one untimed warm-up (file-system caches), then ``--repeats`` timed runs; the
table gives the median and the fastest wall time. Targets: ``--help`` under 0.5 s, the listings
(``plugins``, ``components``, ``recipes``) under 2 s, which holds when none of them imports
torch, kornia or timm. ``components loss nt_xent`` describes one component, which builds it and
so imports torch: it is timed for comparison, with no target.

Pin to one core on a shared machine (the subprocesses inherit it):

    taskset -c 0 python bench/startup.py

Prints a markdown table and writes JSON (default ``bench/results/startup.json``).
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import environment, finish, load_line, median, setup, table, write_json  # noqa: E402

DEEPCLUST = Path(sys.executable).parent / "deepclust"
COMMANDS: list[tuple[list[str], float | None]] = [
    (["--help"], 0.5),
    (["plugins"], 2.0),
    (["components"], 2.0),
    (["components", "loss"], 2.0),
    (["recipes"], 2.0),
    (["components", "loss", "nt_xent"], None),
]
"""Each command's arguments and its target in seconds (None: timed for comparison only)."""


def wall_seconds(argv: list[str]) -> float:
    """Wall time of one ``deepclust ARGV`` process; a failing command is an error."""
    start = time.perf_counter()
    subprocess.run([str(DEEPCLUST), *argv], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(argv: list[str], target: float | None, repeats: int) -> dict[str, Any]:
    """One warm-up, then ``repeats`` timed runs of ``deepclust ARGV``."""
    wall_seconds(argv)
    samples = [wall_seconds(argv) for _ in range(repeats)]
    result: dict[str, Any] = {"command": " ".join(["deepclust", *argv]), "samples_s": samples,
                              "median_s": median(samples), "min_s": min(samples),
                              "target_s": target}
    result["within_target"] = None if target is None else result["median_s"] < target
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    verdict = {None: "—", True: "yes", False: "**no**"}
    rows = [[f"`{r['command']}`", f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
             "—" if r["target_s"] is None else f"< {r['target_s']}",
             verdict[r["within_target"]]] for r in results]
    return table(["command", "median s", "min s", "target s", "within"], rows, "lrrrl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/startup.json)")
    args = parser.parse_args()
    setup()
    env = environment(repeats=args.repeats, cpu_affinity=sorted(os.sched_getaffinity(0)))
    results = [measure(argv, target, args.repeats) for argv, target in COMMANDS]
    env = finish(env)
    path = write_json("startup", {"environment": env, "results": results}, args.out)
    cores = ", ".join(map(str, env["cpu_affinity"]))
    print(f"{env['cpu_model']}; {load_line(env)}; pinned to core(s) {cores}; median of "
          f"{args.repeats} runs after one warm-up\n")
    print(markdown(results))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
