"""Shared helpers of the bench scripts: machine record, timing, markdown tables, JSON output.

Import this after setting ``OPENBLAS_NUM_THREADS`` (each script does so on its first lines);
``setup()`` then pins torch to two threads, the core count of the reference machine.

Every benchmark here runs on a shared, loaded CPU, so each JSON carries ``os.getloadavg()`` at
start and end and every table header prints it. Only compare numbers measured side by side in
one run (as ratios); absolute throughputs move with the load.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import datetime as _dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MNIST_DIR = (ROOT / ".." / "shared" / "data" / "mnist").resolve()
THREADS = 2

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def setup(threads: int = THREADS) -> None:
    """Pin torch's intra-op threads (the machine has two cores and is shared)."""
    torch.set_num_threads(threads)


def loadavg() -> list[float]:
    """1-, 5- and 15-minute load averages, rounded."""
    return [round(v, 2) for v in os.getloadavg()]


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (platform.processor() where it is missing)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD flags of /proc/cpuinfo that matter for fp32/bf16 matmuls."""
    from corekit.engine.devices import cpu_flags as all_flags

    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")
    return [flag for flag in wanted if flag in all_flags()]


def noise_set(n: int, channels: int, side: int, seed: int = 0) -> Any:
    """An ``ImageSet`` of n uniform-noise uint8 images (for timings that need no real data)."""
    from corekit.data import ImageSet
    from corekit.data.dataset import channel_stats

    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8, generator=gen)
    mean, std = channel_stats(images)
    return ImageSet(f"noise{channels}x{side}", images, None, 10, mean, std)


def gaussian_mixture(n: int, d: int, k: int, seed: int, scale: float) -> np.ndarray:
    """(n, d) float32 rows of a seeded k-component Gaussian mixture: unit-variance noise around
    centres drawn from N(0, scale²·I) (a small ``scale`` overlaps the components)."""
    rng = np.random.default_rng(seed)
    centres = scale * rng.standard_normal((k, d), dtype=np.float32)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x += centres[rng.integers(k, size=n)]
    return x


def cosine_inertia(unit: np.ndarray, centres: np.ndarray, labels: np.ndarray) -> float:
    """Σ_i (1 − x_i·n̂(c_{y_i})), the spherical k-means objective of a result, for unit rows
    (N, D), centres (K, D) and labels (N,), in row chunks."""
    directions = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    total = 0.0
    for start in range(0, len(unit), 65536):
        rows, ids = unit[start : start + 65536], labels[start : start + 65536]
        total += float(np.sum(1.0 - np.einsum("ij,ij->i", rows, directions[ids]),
                              dtype=np.float64))
    return total


def mnist_or_noise() -> tuple[Any, str]:
    """All 70,000 MNIST images from ``MNIST_DIR``, or 1×28×28 noise where they are missing."""
    from corekit.data.sources import load_mnist

    if MNIST_DIR.is_dir():
        return load_mnist(MNIST_DIR, "all"), "MNIST (70k real images)"
    return noise_set(70_000, 1, 28), "uniform noise 1×28×28 (MNIST not found)"


def precisions() -> list[str]:
    """The autocast precisions worth timing here: bf16 only where the CPU runs it natively
    (``corekit.engine.devices.cpu_has_native_bf16``); emulated bf16 is orders of magnitude
    slower and would eat the whole time budget (``bf16_emulation_probe`` quantifies it)."""
    from corekit.engine.devices import cpu_has_native_bf16

    return ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]


def bf16_emulation_probe(n: int = 512) -> dict[str, Any]:
    """One n×n matmul in bf16 against fp32 (best of 3 each), for CPUs without native bf16."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    best = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x, y = a.to(dtype), b.to(dtype)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            torch.mm(x, y)
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    return {"n": n, "fp32_seconds": best["fp32"], "bf16_seconds": best["bf16"],
            "bf16_over_fp32": best["bf16"] / best["fp32"]}


def environment(**extra: Any) -> dict[str, Any]:
    """What the numbers were measured on; call at the start of a script."""
    from corekit.engine.devices import cpu_has_native_bf16

    return {
        "native_bf16": cpu_has_native_bf16(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "loadavg_start": loadavg(),
        **extra,
    }


def finish(env: dict[str, Any]) -> dict[str, Any]:
    """Add the end-of-run load average to ``env``."""
    env["loadavg_end"] = loadavg()
    return env


def load_line(env: dict[str, Any]) -> str:
    """One line for a table header: cores, threads and the load averages of ``env``."""
    start = "/".join(f"{v:.2f}" for v in env["loadavg_start"])
    text = (f"{env['cores']} cores, torch {env['torch']} with {env['torch_threads']} threads; "
            f"load average (1/5/15 min) at start {start}")
    if "loadavg_end" in env:
        text += ", at end " + "/".join(f"{v:.2f}" for v in env["loadavg_end"])
    return text


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one letter per column (``l`` or ``r``, default l)."""
    align = align or "l" * len(headers)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None) -> str:
    """A number for a table cell, about three significant digits; ``—`` for a missing one."""
    if value is None:
        return "—"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def write_json(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``payload`` to ``out`` (default ``bench/results/<name>.json``)."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


class Timer:
    """Accumulates wall seconds per named part: ``with timer("forward"): ...``."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self._name = ""
        self._start = 0.0

    def __call__(self, name: str) -> Timer:
        self._name = name
        return self

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.samples.setdefault(self._name, []).append(time.perf_counter() - self._start)
