"""How much of a ``--budget`` a run uses: recipes × budgets × seeds, one thread on one core.

Each run is a ``deepclust train RECIPE --data DATA --budget B --set train.epochs=1000`` subprocess
(1000 epochs, as the ``auto`` preset sets them, so the budget and not the recipe decides when
training ends) pinned with ``taskset -c CORE``, ``OPENBLAS_NUM_THREADS=1`` and one torch thread.
``used`` is what the budget counts (docs/user-guide.md, "A time budget"): from the start of the
run (``final.json``'s time less its ``seconds``) to the end of its report (``report.md``'s
time, the last file written), over the budget. The command's whole wall time over the budget
(``wall_share``, with the program's start-up, importing torch, 2 s on a quiet core) and that
start-up (timed on the same core, median of three) are kept too, and so are the time from the
last epoch's checkpoint to the report (``after_training``, what the run keeps back besides the
last evaluation) and ``/proc/loadavg`` before and after each run (the machine is shared). The
target: 90-100 % used on a quiet machine, never past 105 %.

    taskset -c 1 python bench/budget_accuracy.py --budgets 30s,1m,2m --seeds 3 \\
        --recipes simclr-kmeans,cc,propos --data digits,folder

``folder`` is the ``photos3-gray`` image folder of ``bench/own_folders.py``. Writes
``bench/results/budget_accuracy.json`` (every run after each one, so a stopped bench keeps what
it measured) and a markdown table on stdout, one row per recipe, data and budget with the mean,
min and max of ``used`` over the seeds, the epochs that ran and the 1-minute load average
around the runs.
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

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import environment, finish, load_line, table, write_json  # noqa: E402
from bench.own_folders import build_folders  # noqa: E402
from corekit.budget import parse_budget  # noqa: E402

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1"}


def pinned(core: int, *command: str) -> list[str]:
    """``command`` pinned to CPU ``core``."""
    return ["taskset", "-c", str(core), *command]


def startup_seconds(core: int) -> float:
    """Median of three timings of the program's start-up (Python and ``corekit.runner``)."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(pinned(core, sys.executable, "-c", "import corekit.cli, corekit.runner"),
                       env=ENV, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def proc_loadavg() -> str:
    """``/proc/loadavg`` as it reads: the 1-, 5- and 15-minute load averages, the running and
    all threads, the last process id."""
    return Path("/proc/loadavg").read_text().strip()


def after_training(out: Path) -> float:
    """Seconds from the last epoch's checkpoint (written after its evaluation) of run ``out``
    to its report: the outputs, assignments, pixel baseline and report."""
    checkpoint = next(out.glob("stages/*/checkpoint.pt"))
    return (out / "report.md").stat().st_mtime - checkpoint.stat().st_mtime


def one_run(core: int, recipe: str, data: str, budget: str, seed: int, out: Path,
            startup: float) -> dict[str, Any]:
    """One budgeted ``deepclust train``, what it used and the load around it."""
    command = pinned(core, sys.executable, "-m", "corekit.cli", "train", recipe, "--data", data,
                     "--budget", budget, "--set", "train.epochs=1000", "--set",
                     f"train.seed={seed}", "--out", str(out),
                     "--no-progress")
    before = proc_loadavg()
    t0 = time.perf_counter()
    done = subprocess.run(command, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    seconds = parse_budget(budget)
    row: dict[str, Any] = {"recipe": recipe, "data": data, "budget": budget, "seed": seed,
                           "wall": wall, "wall_share": wall / seconds,
                           "wall_less_startup": (wall - startup) / seconds,
                           "loadavg_before": before, "loadavg_after": proc_loadavg()}
    if done.returncode != 0:
        return row | {"error": f"exit {done.returncode}: "
                               + " / ".join((done.stderr or done.stdout).splitlines()[-3:])}
    final = json.loads((out / "final.json").read_text())
    began = (out / "final.json").stat().st_mtime - final["seconds"]
    row["used"] = ((out / "report.md").stat().st_mtime - began) / seconds
    plan = json.loads(next(out.glob("stages/*/plan.json")).read_text())
    return row | {"run_seconds": final["seconds"], "planned_epochs": plan["epochs"],
                  "epochs": plan["epochs_run"], "refits": plan["refits"],
                  "after_training": after_training(out), "nmi": final.get("nmi")}


def one_minute_load(run: dict[str, Any]) -> list[float]:
    """The 1-minute load average before and after ``run``."""
    return [float(run[key].split()[0]) for key in ("loadavg_before", "loadavg_after")]


def summary_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    """One row per (recipe, data, budget): used mean, min and max over the seeds, epochs,
    re-fits, the seconds after training and the 1-minute load around the runs."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["recipe"], run["data"], run["budget"]), []).append(run)
    rows = []
    for (recipe, data, budget), group in groups.items():
        load = [v for r in group for v in one_minute_load(r)]
        loads = f"{min(load):.1f}-{max(load):.1f}"
        ok = [r for r in group if "error" not in r]
        if not ok:
            rows.append([recipe, data, budget, "0", "—", "—", "—", group[0]["error"][:60], "—",
                         loads])
            continue
        used = [r["used"] for r in ok]
        epochs = "/".join(str(r["epochs"]) for r in ok)
        refits = "/".join(str(len(r["refits"])) for r in ok)
        after = [r["after_training"] for r in ok]
        rows.append([recipe, data, budget, str(len(ok)), f"{100 * statistics.mean(used):.0f} %",
                     f"{100 * min(used):.0f}-{100 * max(used):.0f} %", epochs, refits,
                     f"{min(after):.1f}-{max(after):.1f} s", loads])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="30s,1m,2m")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--recipes", default="simclr-kmeans,cc,propos")
    parser.add_argument("--data", default="digits,folder",
                        help="data sets; 'folder' is bench/own_folders.py's photos3-gray")
    parser.add_argument("--core", type=int, default=1, help="the CPU every run is pinned to")
    parser.add_argument("--out", type=Path, default=None, help="the JSON (default bench/"
                                                               "results/budget_accuracy.json)")
    args = parser.parse_args()
    startup = startup_seconds(args.core)
    env = environment(core=args.core, threads=1, startup_seconds=startup)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_folders(Path(tmp))["photos3-gray"]
        for data in args.data.split(","):
            source = f"imagefolder:{folder}" if data == "folder" else data
            for recipe in args.recipes.split(","):
                for budget in args.budgets.split(","):
                    for seed in range(args.seeds):
                        out = Path(tmp) / f"{recipe}-{data}-{budget}-{seed}"
                        run = one_run(args.core, recipe, source, budget, seed, out, startup)
                        runs.append(run | {"data": data})
                        print(json.dumps({k: v for k, v in runs[-1].items() if k != "refits"}),
                              flush=True)
                        write_json("budget_accuracy", finish(env) | {"runs": runs}, args.out)
    payload = finish(env) | {"runs": runs}
    write_json("budget_accuracy", payload, args.out)
    print(load_line(payload) + f"; one thread pinned to core {args.core}, start-up "
                               f"{startup:.1f} s not counted")
    print(table(["recipe", "data", "budget", "seeds", "used (mean)", "used (min-max)",
                 "epochs per seed", "re-fits per seed", "after training", "load (1 min)"],
                summary_rows(runs), "llllrrllrr"))


if __name__ == "__main__":
    main()
