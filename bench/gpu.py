"""Every CUDA path of the core, checked and timed: ``python bench/gpu.py`` on a CUDA machine.

Checks (each ``ok``, ``failed`` with the error, or ``skipped`` with the reason):

- ``fp32``, ``bf16`` and ``fp16`` steps (fp16 with the trainer's ``GradScaler``), each a few
  real train steps of the HaDis CIFAR-10 stage with a finite loss;
- ``channels_last`` and ``compile`` steps (``torch.compile`` of encoders and heads);
- ``auto``: the numerics decision (``corekit.engine.numerics``) and its timings;
- the E-step on the device: ``kmeans`` (torch Lloyd on the device, and faiss GPU where faiss
  has GPU support) and ``spherical_kmeans``, labels and centres on the device.

Timings: one epoch (every step, then the E-step) of the HaDis CIFAR-10 recipe and of a SimCLR
ResNet-18 CIFAR-10 stage at batch 512, on 50,000 synthetic 3×32×32 uint8 images held on the
GPU (views made there by the kornia pipelines), with the numerics ``auto`` chose for each
(issue #34's target: a SimCLR epoch in at most 6 s); and the E-step at N = 1M, D = 128,
K = 1000 (``bench/estep_5x.py``'s blobs, 20 iterations) with faiss GPU, against the median
scikit-learn time of ``bench/results/estep_5x*.json`` measured on the project's 2-core CPU
(target: at least 20x). The whole run is meant to take under 8 minutes on a GPU.

Without CUDA, ``--tiny`` runs the same code on the CPU on 64 images with batch 16, 2 steps
per epoch and a small CNN for backbone (the tests do); it proves the script, not the GPU. Writes
``bench/results/gpu.json`` (or ``--out``) and a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import environment, finish, noise_set, setup, table, write_json  # noqa: E402
from corekit import recipe as rc  # noqa: E402
from corekit.components.clusterers import KMeans, SphericalKMeans  # noqa: E402
from corekit.engine import numerics as nm  # noqa: E402
from corekit.plugins import get_plugins  # noqa: E402
from corekit.runner import StageProbe  # noqa: E402

FULL = {"images": 50_000, "steps": 3, "estep": (50_000, 128, 10),
        "estep_1m": (1_000_000, 128, 1000)}
TINY = {"images": 64, "steps": 2, "estep": (512, 16, 4), "estep_1m": (2048, 16, 8)}
ESTEP_ITERS = 20


def sklearn_reference() -> float | None:
    """The median wall seconds of scikit-learn's k-means at N = 1M, K = 1000, 20 iterations,
    over the full runs of ``bench/estep_5x.py`` kept in bench/results (None if there are
    none)."""
    import json
    import statistics

    from bench.common import RESULTS

    seconds = [r["seconds"] for path in sorted(RESULTS.glob("estep_5x*.json"))
               for r in json.loads(path.read_text())["results"]
               if r["task"] == "kmeans" and r["n"] == 1_000_000 and r["k"] == 1000
               and r["max_iter"] == ESTEP_ITERS and r["method"].startswith("scikit-learn")]
    return statistics.median(seconds) if seconds else None


def estep_1m(shape: tuple[int, int, int], device: torch.device) -> dict[str, Any]:
    """Our k-means (``backend="auto"``: faiss GPU on CUDA where installed) on
    ``bench/estep_5x.py``'s blobs, the features on ``device``: seconds and the speed-up over
    the recorded scikit-learn time."""
    from bench.common import gaussian_mixture

    n, dim, k = shape
    features = torch.from_numpy(gaussian_mixture(n, dim, k, 0, 0.5)).to(device)
    clusterer = KMeans(k, n_init=1, max_iter=ESTEP_ITERS, tol=0.0, backend="auto")
    t0 = time.perf_counter()
    result = clusterer.fit(features)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    reference = sklearn_reference() if n == 1_000_000 else None
    return {"n": n, "d": dim, "k": k, "backend": clusterer.resolved_backend(device),
            "seconds": seconds, "inertia": float(result.inertia),
            "sklearn_cpu_seconds": reference,
            "speedup": reference / seconds if reference else None}


def stage_of(recipe: str, preset: str | None, device: torch.device, tiny: bool,
             *overrides: str) -> rc.Stage:
    """The first stage of ``recipe`` (``preset``) on ``device``, numerics left to ``auto``."""
    sets = [f'train.device="{device}"', 'train.precision="auto"',
            'train.memory_format="auto"', "train.checkpoint_every=0", *overrides]
    if tiny:
        sets += ["train.batch_size=16", "train.steps_per_epoch=2",
                 'model.backbone={type="small_cnn", width=8, out_dim=32}']
    return rc.resolve(recipe, get_plugins().find_recipe, preset, sets).stages[0]


def hadis_stage(device: torch.device, tiny: bool) -> rc.Stage:
    return stage_of("hadis", "cifar10", device, tiny)


def simclr_stage(device: torch.device, tiny: bool) -> rc.Stage:
    """``simclr-kmeans`` with a CIFAR ResNet-18 at 32 px and batch 512."""
    return stage_of("simclr-kmeans", None, device, tiny, 'model.backbone={type="resnet18_cifar"}',
                    "augment.size=32", "train.batch_size=512")


def check(name: str, run: Callable[[], str]) -> dict[str, Any]:
    """``run()`` returns a detail line, raises ``Skip`` to skip, anything else fails."""
    t0 = time.perf_counter()
    try:
        detail, status = run(), "ok"
    except Skip as why:
        detail, status = str(why), "skipped"
    except Exception as exc:  # noqa: BLE001 - a bench reports every failure and goes on
        detail, status = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}", "failed"
    return {"check": name, "status": status, "seconds": time.perf_counter() - t0,
            "detail": detail}


class Skip(Exception):
    """A check that does not apply on this machine."""


def step_check(stage: rc.Stage, data: Any, device: torch.device, numerics: nm.Numerics,
               steps: int) -> Callable[[], str]:
    def run() -> str:
        if numerics.precision == "fp16" and device.type != "cuda":
            raise Skip("fp16 autocast needs CUDA")
        if numerics.precision == "bf16" and numerics.precision not in nm.precisions(device):
            raise Skip("bf16 does not run natively here")
        trial = StageProbe(get_plugins(), stage, lambda _n: data, device).trial(numerics, steps)
        if trial.error is not None:
            raise RuntimeError(trial.error)
        if not trial.finite:
            raise RuntimeError("non-finite loss")
        return f"loss {trial.first_loss:.4f}, {trial.seconds_per_step * 1e3:.1f} ms/step"
    return run


def estep_check(clusterer: Any, shape: tuple[int, int, int], device: torch.device,
                backend: str | None = None) -> Callable[[], str]:
    def run() -> str:
        n, dim, _ = shape
        features = torch.randn(n, dim, generator=torch.Generator().manual_seed(0)).to(device)
        if backend is not None and clusterer.resolved_backend(device) != backend:
            raise Skip(f"backend {backend!r} not available here "
                       f"(auto resolves to {clusterer.resolved_backend(device)!r})")
        t0 = time.perf_counter()
        result = clusterer.fit(features)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        if result.labels.device.type != device.type or result.centroids.device.type != device.type:
            raise RuntimeError(f"result on {result.labels.device}, not {device}")
        return f"N={n} D={dim} K={clusterer.n_clusters}: {seconds:.2f} s, inertia " \
               f"{result.inertia:.4g}"
    return run


def epoch_seconds(stage: rc.Stage, data: Any, device: torch.device) -> dict[str, Any]:
    """One epoch of ``stage`` with its ``auto`` numerics: every step, then the E-step."""
    probe = StageProbe(get_plugins(), stage, lambda _n: data, device)
    with tempfile.TemporaryDirectory() as cache:
        decision = probe.numerics(nm.DecisionCache(Path(cache) / nm.CACHE_FILE))
    with tempfile.TemporaryDirectory() as folder:
        composed = probe.copy(decision.chosen)
        trainer = probe.trainer(composed, Path(folder))
        generator = torch.Generator().manual_seed(0)
        order = composed.sampler.order(len(composed.train_set), trainer.steps *
                                       trainer.batch_size, generator, composed.state)
        batches = list(composed.train_set.batches(order, trainer.batch_size))[:trainer.steps]
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        for indices, images in batches:
            trainer.train_step(indices, images, 0, generator)
        sync()
        steps = time.perf_counter() - t0
        t0 = time.perf_counter()
        if composed.stage.clusterer is not None:
            trainer.e_step(0)
        sync()
        estep = time.perf_counter() - t0
    return {"numerics": decision.chosen.label(), "steps": len(batches),
            "batch": trainer.batch_size, "step_seconds": steps, "estep_seconds": estep,
            "epoch_seconds": steps + estep,
            "images_per_second": len(batches) * trainer.batch_size / steps}


def run_all(device: torch.device, tiny: bool, compile_check: bool = True) -> dict[str, Any]:
    size = TINY if tiny else FULL
    data = noise_set(size["images"], 3, 32).to(device)
    hadis = hadis_stage(device, tiny)
    settings = [nm.Numerics("fp32"), nm.Numerics("bf16"), nm.Numerics("fp16"),
                nm.Numerics(memory_format="channels_last"),
                *([nm.Numerics(compile=True)] if compile_check else [])]
    checks = [check(n.label(), step_check(hadis, data, device, n, size["steps"]))
              for n in settings]
    n, dim, k = size["estep"]
    checks += [
        check("kmeans torch", estep_check(KMeans(k, n_init=1, max_iter=20, backend="torch"),
                                          size["estep"], device)),
        check("kmeans faiss-gpu", estep_check(KMeans(k, n_init=1, max_iter=20, backend="auto"),
                                              size["estep"], device, backend="faiss")),
        check("spherical_kmeans", estep_check(SphericalKMeans(k, n_init=1, max_iter=20),
                                              size["estep"], device)),
    ]
    epochs = {"hadis cifar10": epoch_seconds(hadis, data, device),
              "simclr resnet18_cifar b512": epoch_seconds(simclr_stage(device, tiny), data,
                                                          device)}
    return {"checks": checks, "epochs": epochs, "estep_1m": estep_1m(size["estep_1m"], device)}


def report(result: dict[str, Any]) -> str:
    checks = table(["check", "status", "seconds", "detail"],
                   [[c["check"], c["status"], f"{c['seconds']:.1f}", c["detail"]]
                    for c in result["checks"]])
    epochs = table(["epoch", "numerics (auto)", "steps x batch", "steps s", "E-step s",
                    "img/s"],
                   [[name, e["numerics"], f"{e['steps']} x {e['batch']}",
                     f"{e['step_seconds']:.1f}", f"{e['estep_seconds']:.1f}",
                     f"{e['images_per_second']:,.0f}"] for name, e in result["epochs"].items()])
    e = result["estep_1m"]
    speedup = f"{e['speedup']:.1f}x" if e["speedup"] else "no scikit-learn reference"
    estep = table(["E-step", "backend", "seconds", "scikit-learn s (2-core CPU)", "speed-up"],
                  [[f"N={e['n']:,} D={e['d']} K={e['k']}, {ESTEP_ITERS} iterations", e["backend"],
                    f"{e['seconds']:.2f}", f"{e['sklearn_cpu_seconds'] or float('nan'):.0f}",
                    speedup]])
    return f"{checks}\n\n{epochs}\n\n{estep}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="64 images, 2 steps (CPU tests)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out the compile check (minutes of inductor work on a CPU)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    if device.type != "cuda" and not args.tiny:
        print("no CUDA device: run with --tiny for the CPU check of this script "
              "(it times nothing a GPU would)", file=sys.stderr)
        return 2
    setup()
    env = environment(device=str(device), tiny=args.tiny,
                      gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    result = run_all(device, args.tiny, compile_check=not args.no_compile)
    payload = finish(env) | result
    write_json("gpu", payload, args.out)
    print(report(result))
    return 1 if any(c["status"] == "failed" for c in result["checks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
