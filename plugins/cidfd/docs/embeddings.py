"""Extract, score and plot the embeddings of a trained idfd / cidfd run (a development tool).

    python plugins/cidfd/docs/embeddings.py RUN_DIR [RUN_DIR ...] [--png OUT.png] [--tsne N]

For each run directory it rebuilds the last stage from its saved ``recipe.toml`` and
checkpoint (as ``deepclust evaluate`` does), extracts the clusterer's features of the whole
training set with the eval transform, runs the stage's k-means and prints ACC/NMI/ARI against
the digits and against the stripe families. With ``--png`` it draws a t-SNE (scikit-learn) of
``N`` random images per run, coloured by digit and by stripe family. This script uses the
core's runner (``corekit.runner.restore_stage``), so it lives outside the plugin package.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from corekit import metrics
from corekit.plugins import load_plugins
from corekit.run_files import load_run_recipe
from corekit.runner import restore_stage


def load_features(run_dir: Path) -> dict:
    """Features, k-means labels, digits and stripe families of the last stage of a run."""
    trainer = restore_stage(run_dir, load_plugins(), torch.device("cpu"))
    composed = trainer.composed
    stage = composed.stage
    spec = stage.eval.features or stage.clusterer.features
    feats = trainer.features(spec, composed.train_set)
    pred = trainer.cluster(spec).labels.cpu()
    data = composed.train_set
    return {"features": feats.cpu().numpy(), "pred": pred, "digits": data.labels.cpu(),
            "families": data.families.cpu(), "name": load_run_recipe(run_dir).name}


def scores(found: dict) -> dict[str, dict[str, float]]:
    digits = metrics.evaluate(found["digits"], found["pred"], 10)
    stripes = metrics.evaluate(found["families"], found["pred"], 10)
    return {"digits": {k: digits[k] for k in ("acc", "nmi", "ari")},
            "stripes": {k: stripes[k] for k in ("acc", "nmi", "ari")}}


def plot(runs: list[tuple[str, dict]], out: Path, n: int, seed: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(len(runs), 2, figsize=(8, 4 * len(runs)), squeeze=False)
    for row, (title, found) in enumerate(runs):
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(found["features"]), size=min(n, len(found["features"])),
                          replace=False)
        xy = TSNE(n_components=2, init="pca", perplexity=30, random_state=seed,
                  n_jobs=1).fit_transform(found["features"][pick])
        for col, (key, cmap, label) in enumerate([("digits", "tab10", "digit"),
                                                  ("families", "Set1", "stripe family")]):
            ax = axes[row, col]
            colours = found[key].numpy()[pick]
            ax.scatter(xy[:, 0], xy[:, 1], c=colours, cmap=cmap, s=2, linewidths=0,
                       vmin=0, vmax=9 if key == "digits" else 8)
            ax.set_title(f"{title}: coloured by {label}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=72)
    from PIL import Image

    Image.open(out).convert("RGB").quantize(colors=32).save(out, optimize=True)  # ~40 kB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--tsne", type=int, default=3000)
    parser.add_argument("--titles", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    found = []
    for i, run in enumerate(args.runs):
        f = load_features(run)
        title = args.titles[i] if args.titles else f["name"]
        print(run, title, scores(f))
        found.append((title, f))
    if args.png:
        plot(found, args.png, args.tsne)


if __name__ == "__main__":
    main()
