"""SPICE on MNIST with the CPU preset: each stage's clustering, the selected head, the reliable
labels' accuracy and the CPU time of all three stages, per seed.

Each seed trains as a user would, in its own subprocess on one thread:
``deepclust train spice --data mnist:DIR --set train.seed=S --out RUN``. Its CPU time (user +
system) and wall time are measured around the subprocess. The labels are read afterwards, from
the run folder, only for this table: the reliable labels' accuracy is their agreement with
the ground truth under the cluster-to-class map that maximises it (Hungarian).

    taskset -c 1 python bench/spice_mnist.py [--seeds 0,1,2] [--runs DIR]

writes ``bench/results/spice_mnist.json`` (or ``--out``) after every seed and a markdown table.
``--runs`` keeps the run folders there (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import MNIST_DIR, environment, finish, load_line, table, write_json  # noqa: E402

STAGES = ("moco", "self", "semi")


def cpu_seconds() -> float:
    """User + system seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(seed: int, out: Path) -> dict[str, float]:
    """Train all three stages for ``seed`` into ``out``; its wall and CPU seconds."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = ["deepclust", "train", "spice", "--data", f"mnist:{MNIST_DIR}", "--set",
               f"train.seed={seed}", "--out", str(out), "--no-progress"]
    cpu, wall = cpu_seconds(), time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    return {"wall_seconds": time.perf_counter() - wall, "cpu_seconds": cpu_seconds() - cpu}


def reliable_accuracy(run: Path) -> dict[str, Any]:
    """The reliable set's size, per-cluster count and accuracy against the MNIST labels."""
    import torch
    from scipy.optimize import linear_sum_assignment

    from corekit.data import load_dataset

    truth = load_dataset(f"mnist:{MNIST_DIR}").labels
    rows = torch.load(run / "stages" / "self" / "outputs.pt",
                      weights_only=False)["state"]["reliable"]
    index, label = rows["index"].long(), rows["label"].long()
    k = int(max(int(label.max()), int(truth.max()))) + 1
    counts = torch.zeros(k, k, dtype=torch.long)
    counts.index_put_((label, truth[index].long()), torch.ones_like(label), accumulate=True)
    clusters, classes = linear_sum_assignment(-counts.numpy())
    correct = int(counts[clusters, classes].sum())
    return {"images": int(index.numel()),
            "per_cluster": torch.bincount(label, minlength=k).tolist(),
            "accuracy": correct / max(int(index.numel()), 1)}


def summary(run: Path) -> dict[str, Any]:
    """Each stage's ``final.json``, the selection and the reliable labels of one run."""
    finals = {stage: json.loads((run / "stages" / stage / "final.json").read_text())
              for stage in STAGES}
    selection = json.loads((run / "stages" / "self" / "selection.json").read_text())
    return {"stages": {s: {k: finals[s][k] for k in ("nmi", "acc", "ari")} for s in STAGES},
            "selection": {k: selection[k] for k in ("head", "epoch", "score", "labels_read")},
            "reliable": reliable_accuracy(run)}


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", type=Path, default=None, help="keep the run folders here")
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON (default bench/results/spice_mnist.json)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    env = environment(seeds=seeds, preset="mnist", omp_threads=1)
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        for seed in seeds:
            run = runs / f"spice-mnist-seed{seed}"
            results[seed] = train(seed, run) | summary(run)
            print(f"seed {seed}: {results[seed]}", flush=True)
            write_json("spice_mnist", finish(env) | {"results": results}, args.out)
    rows = []
    for stage, name in zip(STAGES, ("MoCo + k-means", "SPICE-Self", "SPICE"), strict=True):
        rows.append([name, *(spread([r["stages"][stage][k] for r in results.values()])
                             for k in ("nmi", "acc", "ari"))])
    print(load_line(env))
    print(table(["stage", "NMI (geometric)", "ACC", "ARI"], rows))
    print(table(["seed", "head", "after epoch", "score", "reliable images", "reliable ACC",
                 "CPU min", "wall min"],
                [[seed, r["selection"]["head"], r["selection"]["epoch"],
                  f"{r['selection']['score']:.6f}", r["reliable"]["images"],
                  f"{r['reliable']['accuracy']:.4f}", f"{r['cpu_seconds'] / 60:.1f}",
                  f"{r['wall_seconds'] / 60:.1f}"] for seed, r in results.items()]))


if __name__ == "__main__":
    main()
