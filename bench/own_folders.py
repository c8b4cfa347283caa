"""Quality on image folders no one tuned for: every shipped method with only
``--data imagefolder:PATH --budget B`` against k-means on raw pixels, mean ± std over seeds.

The folders are built here from photos that ship with installed packages (scikit-learn's
``china.jpg`` and ``flower.jpg``, matplotlib's ``grace_hopper.jpg``), never from digits, MNIST
or scikit-image's images (kept for a held-out check):

- ``photos3-gray``: 24-px grey patches cut at random from the three photos; the class is the
  photo a patch comes from (3 classes, 150 patches each);
- ``regions4-rgb``: 24-px colour patches from the four quadrants of ``china.jpg``; the class
  is the quadrant (4 classes, 120 patches each).

    python bench/own_folders.py --budget 1m --seeds 3 [--methods simclr-kmeans,cc,...]

writes ``bench/results/own_folders-<budget>.json`` (``--tag`` adds a suffix, so two folders can
run at once, one per core) after every method, and a markdown table on stdout. Each run is a
``deepclust train`` subprocess, one thread, ``OPENBLAS_NUM_THREADS=1``; a run that fails is
recorded with its last lines of output, and the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import environment, finish, load_line, table, write_json  # noqa: E402

METHODS = ("simclr-kmeans", "cc", "propos", "hadis", "digpro")
SIDE = 24


def _photos() -> dict[str, np.ndarray]:
    import matplotlib
    from PIL import Image
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    photos = dict(zip(("china", "flower"), sample.images, strict=True))
    grace = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photos["grace_hopper"] = np.asarray(Image.open(grace).convert("RGB"))
    return photos


def _save(folder: Path, label: str, index: int, patch: np.ndarray, gray: bool) -> None:
    from PIL import Image

    (folder / label).mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(patch)
    (image.convert("L") if gray else image).save(folder / label / f"{index:04d}.png")


def build_folders(root: Path, seed: int = 0, gray_per_class: int = 150,
                  rgb_per_class: int = 120) -> dict[str, Path]:
    """The two folders (one subfolder per class), deterministic for ``seed``; the class sizes
    are the benchmark's unless given."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    gray = root / "photos3-gray"
    for label, photo in photos.items():
        for i in range(gray_per_class):
            y = rng.integers(0, photo.shape[0] - SIDE)
            x = rng.integers(0, photo.shape[1] - SIDE)
            _save(gray, label, i, photo[y:y + SIDE, x:x + SIDE], gray=True)
    regions = root / "regions4-rgb"
    china = photos["china"]
    h, w = china.shape[0] // 2, china.shape[1] // 2
    for q, (y0, x0) in enumerate(((0, 0), (0, w), (h, 0), (h, w))):
        for i in range(rgb_per_class):
            y = y0 + rng.integers(0, h - SIDE)
            x = x0 + rng.integers(0, w - SIDE)
            _save(regions, f"quadrant{q}", i, china[y:y + SIDE, x:x + SIDE], gray=False)
    return {"photos3-gray": gray, "regions4-rgb": regions}


def raw_pixel_kmeans(folder: Path, seeds: int) -> dict[str, float]:
    """k-means (scikit-learn, 10 restarts) on the flattened pixels, per seed."""
    import torch
    from sklearn.cluster import KMeans

    from corekit import metrics
    from corekit.data import load_dataset

    data = load_dataset(f"imagefolder:{folder}")
    x = data.images.reshape(len(data), -1).float().numpy() / 255
    runs = [metrics.evaluate(data.labels, torch.from_numpy(
        KMeans(data.num_classes, n_init=10, random_state=s).fit_predict(x)), data.num_classes)
        for s in range(seeds)]
    return {f"{k}_{stat}": float(fn([r[k] for r in runs])) for k in ("nmi", "acc", "ari")
            for stat, fn in (("mean", np.mean), ("std", lambda v: np.std(v, ddof=1)))}


def train(method: str, folder: Path, budget: str, seeds: int, out: Path,
          overrides: list[str]) -> dict[str, Any]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "corekit.cli", "train", method, "--data",
               f"imagefolder:{folder}", "--budget", budget, "--seeds", str(seeds), "--out",
               str(out), "--no-progress", *(a for o in overrides for a in ("--set", o))]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: "
                         + " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])}
    final = json.loads((out / "final.json").read_text())
    return {k: final[k] for k in final if k.split("_")[0] in ("nmi", "acc", "ari")
            and k.endswith(("_mean", "_std"))} | {
        "seconds": sum(run["seconds"] for run in final["runs"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="1m")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--folders", default="photos3-gray,regions4-rgb")
    parser.add_argument("--tag", default="", help="suffix of the JSON file name")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        help="a recipe override for every method (an ablation), repeatable")
    args = parser.parse_args()
    env = environment(budget=args.budget, seeds=args.seeds, overrides=args.overrides)
    name = f"own_folders-{args.budget}" + (f"-{args.tag}" if args.tag else "")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = build_folders(Path(tmp))
        for folder_name in args.folders.split(","):
            folder = folders[folder_name]
            per = results[folder_name] = {
                "raw-pixel k-means": raw_pixel_kmeans(folder, args.seeds)}
            for method in args.methods.split(","):
                per[method] = train(method, folder, args.budget, args.seeds,
                                    Path(tmp) / f"{folder_name}-{method}", args.overrides)
                print(f"{folder_name} {method}: {per[method]}", flush=True)
                write_json(name, finish(env) | {"results": results})
    payload = finish(env) | {"results": results}
    write_json(name, payload)
    rows = [[folder_name, method, *(
        f"{r[f'{k}_mean']:.3f} ± {r[f'{k}_std']:.3f}" if "error" not in r else r["error"][:40]
        for k in ("nmi", "acc", "ari")), f"{r.get('seconds', 0) / 60:.1f}"]
        for folder_name, per in results.items() for method, r in per.items()]
    print(load_line(payload))
    print(table(["folder", "method", "NMI", "ACC", "ARI", "train min (all seeds)"], rows))


if __name__ == "__main__":
    main()
