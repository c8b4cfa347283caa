"""E-step scaling benchmark: k-means and spherical k-means, ours vs scikit-learn.

Grid: N ∈ {10k, 70k, 1M} × D ∈ {128, 256} × K ∈ {10, 100, 1000}; ``--quick`` runs N ∈ {10k, 70k},
D = 128, K ∈ {10, 100}. Every backend clusters the same seeded Gaussian mixture (K components,
centres ~ N(0, 0.04·I), unit noise; L2-normalised rows for spherical k-means). The components
overlap on purpose: on well-separated blobs Lloyd converges in 1-3 iterations and the timings
measure little but the initialisation.

Equal work: one restart (``n_init = 1``), ``max_iter`` Lloyd iterations (default 20) and
``tol = 0``. faiss always runs exactly ``max_iter`` iterations; torch and scikit-learn still stop
early when the labels stop changing (strict convergence), so the table reports the iterations
each run did. Every timing includes the greedy k-means++ initialisation (ours, in torch, for every
one of our backends; scikit-learn's own for the baseline) and the final assignment. The
``scikit-learn`` baseline is ``KMeans(algorithm="lloyd")``; for spherical k-means it is the same
Euclidean KMeans on the normalised rows (the nearest scikit-learn has). Our ``KMeans`` rows are
``auto`` (what training uses on CPU features), ``torch``, ``faiss`` and ``sklearn`` (scikit-learn's
Lloyd loop started from our seeding). A cell whose time, extrapolated linearly in
N·D·K from the backend's largest finished cell, exceeds ``--cap`` seconds is printed as
"skipped (over budget)" and stored with ``seconds = null``. Timings are the minimum of
``--repeats`` runs taken round-robin over the backends (the CPU may be shared). Every backend
gets ``--threads`` threads (default 2; OpenBLAS stays at 1 thread, set before numpy loads).

    python bench/estep_scaling.py --quick
    python bench/estep_scaling.py --n 1000000 --d 128 --k 1000 --cap 900
    python bench/estep_scaling.py --n 1000000 --d 128 --k 1000 --tasks kmeans \
        --backends scikit-learn auto --threads 1     # the target's cell, ours vs the baseline

Prints a markdown table and writes JSON (default ``bench/results/estep_scaling.json``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
from sklearn.cluster import KMeans as SklearnKMeans  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cosine_inertia, gaussian_mixture  # noqa: E402
from corekit.components.clusterers import KMeans, SphericalKMeans  # noqa: E402

FULL_GRID = {"n": [10_000, 70_000, 1_000_000], "d": [128, 256], "k": [10, 100, 1000]}
QUICK_GRID = {"n": [10_000, 70_000], "d": [128], "k": [10, 100]}
SKIPPED = "skipped (over budget)"
BASELINE = "scikit-learn"

CENTRE_SCALE = 0.2
Key = tuple[str, str]
Timed = tuple[float, float, int]
Run = Callable[[], Timed]


def runners(x: np.ndarray, unit: np.ndarray, k: int, args: argparse.Namespace) -> dict[Key, Run]:
    """(task, backend) → a function that clusters once and returns (seconds, inertia, iters)."""
    common = {"n_init": 1, "max_iter": args.max_iter, "tol": 0.0}
    x_t, unit_t = torch.from_numpy(x), torch.from_numpy(unit)

    def ours(clusterer: KMeans | SphericalKMeans, data: torch.Tensor) -> Run:
        def run() -> Timed:
            start = time.perf_counter()
            result = clusterer.fit(data)
            return time.perf_counter() - start, result.inertia, result.n_iter

        return run

    def baseline(data: np.ndarray, spherical: bool) -> Run:
        def run() -> Timed:
            model = SklearnKMeans(k, init="k-means++", algorithm="lloyd", random_state=0, **common)
            start = time.perf_counter()
            model.fit(data)
            elapsed = time.perf_counter() - start
            inertia = (
                cosine_inertia(data, model.cluster_centers_, model.labels_)
                if spherical
                else float(model.inertia_)
            )
            return elapsed, inertia, int(model.n_iter_)

        return run

    found = {
        ("kmeans", BASELINE): baseline(x, spherical=False),
        ("spherical", "torch"): ours(SphericalKMeans(k, seed=0, **common), unit_t),
        ("spherical", BASELINE): baseline(unit, spherical=True),
    }
    for backend in ("auto", "torch", "sklearn") + (("faiss",) if faiss_version() else ()):
        found["kmeans", backend] = ours(KMeans(k, backend=backend, seed=0, **common), x_t)
    order = sorted(found, key=lambda key: (key[0], key[1] != BASELINE, key[1]))
    return {key: found[key] for key in order if key[0] in args.tasks and key[1] in args.backends}


def warm_up(args: argparse.Namespace) -> None:
    x = gaussian_mixture(2000, 16, 10, seed=1, scale=CENTRE_SCALE)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for run in runners(x, unit, 10, args).values():
        run()


def bench_cell(
    n: int, d: int, k: int, args: argparse.Namespace, largest: dict, rows: list[dict]
) -> None:
    """Time one (N, D, K) cell; repeats go round-robin over the backends so that a burst of load
    from elsewhere on the machine hits all of them alike."""
    x = gaussian_mixture(n, d, k, seed=0, scale=CENTRE_SCALE)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    work = n * d * k
    runs = runners(x, unit, k, args)
    timings: dict[Key, list[Timed]] = {}
    for key in runs:
        seconds, size = largest.get(key, (0.0, 1))
        if seconds * work / size <= args.cap:
            timings[key] = []
    for _ in range(args.repeats):
        for key, found in timings.items():
            found.append(runs[key]())
            print(f"  {n}x{d} K={k} {'/'.join(key)}: {found[-1][0]:.2f} s", file=sys.stderr)
    for task, backend in runs:
        row = {"task": task, "n": n, "d": d, "k": k, "backend": backend}
        if (task, backend) in timings:
            elapsed, inertia, n_iter = min(timings[task, backend])
            largest[task, backend] = (elapsed, work)
            reference = elapsed if backend == BASELINE else sklearn_seconds(row, rows)
            ratio = elapsed / reference if reference else None
            row |= {"seconds": elapsed, "status": "ok", "ratio_vs_sklearn": ratio}
            row |= {"inertia": inertia, "n_iter": n_iter}
        else:
            row |= {"seconds": None, "status": SKIPPED}
        rows.append(row)
        print(format_row(row), flush=True)


def bench(args: argparse.Namespace) -> list[dict]:
    """Run the grid, smallest cells first (the time cap extrapolates from finished cells)."""
    largest: dict[Key, tuple[float, int]] = {}
    rows: list[dict] = []
    for n in sorted(args.n):
        for d in sorted(args.d):
            for k in sorted(args.k):
                bench_cell(n, d, k, args, largest, rows)
    return rows


def sklearn_seconds(row: dict, rows: list[dict]) -> float | None:
    for other in rows:
        same_cell = all(other[key] == row[key] for key in ("task", "n", "d", "k"))
        if same_cell and other["backend"] == BASELINE:
            return other["seconds"]
    return None


def format_row(row: dict) -> str:
    cell = f"| {row['task']} | {row['n']:,} | {row['d']} | {row['k']} | {row['backend']} |"
    if row["seconds"] is None:
        return f"{cell} {row['status']} | — | — | — |"
    ratio = "—" if row["ratio_vs_sklearn"] is None else f"{row['ratio_vs_sklearn']:.2f}"
    return f"{cell} {row['seconds']:.3f} | {ratio} | {row['n_iter']} | {row['inertia']:.6g} |"


HEADER = (
    "| task | N | D | K | backend | seconds | ratio vs sklearn (t / t_sk) | iters | inertia |\n"
    "|---|---:|---:|---:|---|---:|---:|---:|---:|"
)


def faiss_version() -> str | None:
    try:
        import faiss
    except ImportError:
        return None
    return faiss.__version__


def limit_threads(threads: int) -> None:
    """The same thread count for torch, faiss (OpenMP) and scikit-learn (OpenMP + BLAS)."""
    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="openmp")
    if faiss_version():
        import faiss

        faiss.omp_set_num_threads(threads)


def environment(args: argparse.Namespace) -> dict:
    return {
        "max_iter": args.max_iter,
        "tol": 0.0,
        "n_init": 1,
        "repeats": args.repeats,
        "cap_seconds": args.cap,
        "torch": torch.__version__,
        "threads": args.threads,
        "faiss": faiss_version(),
        "sklearn": sklearn.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid, < 3 minutes on 2 cores")
    parser.add_argument("--n", type=int, nargs="+", help="override the grid's N values")
    parser.add_argument("--d", type=int, nargs="+", help="override the grid's D values")
    parser.add_argument("--k", type=int, nargs="+", help="override the grid's K values")
    parser.add_argument(
        "--backends", nargs="+", default=[BASELINE, "auto", "torch", "sklearn", "faiss"],
        help=f"{BASELINE} (the baseline, with its own k-means++) and our KMeans backends",
    )
    parser.add_argument("--tasks", nargs="+", default=["kmeans", "spherical"])
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="threads for every backend")
    parser.add_argument("--cap", type=float, default=120.0, help="per-cell time budget (s)")
    parser.add_argument("--repeats", type=int, help="timed runs per cell (default 3 quick, 1 full)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/estep_scaling.json")
    args = parser.parse_args(argv)
    grid = QUICK_GRID if args.quick else FULL_GRID
    for axis in ("n", "d", "k"):
        setattr(args, axis, getattr(args, axis) or grid[axis])
    args.repeats = args.repeats or (3 if args.quick else 1)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    limit_threads(args.threads)
    warm_up(args)
    print(HEADER, flush=True)
    rows = bench(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"environment": environment(args), "results": rows}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
