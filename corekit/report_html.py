"""The run report with pictures: ``RUN/report/index.html`` and the PNG files beside it.

Made after every training run (``write_report``) and rebuilt by ``deepclust report RUN``. The
page is plain HTML with a little inline CSS and relative PNG files: it opens offline, with no
script and nothing fetched from the network. Every section is made on its own; one that cannot
be made (no labels, data that no longer loads, a plotting error) is replaced by a line saying
why, listed at the top of the page, and the rest is still written.

Sections: what ran (``run.json``), the final metrics (``final.json``), cluster sizes, sample
images per cluster (highest confidence first, the run's data reloaded with its recipe), the
confusion matrix against the labels (rows = classes, columns = clusters in Hungarian order,
also written as ``confusion.csv``), a 2-D embedding (t-SNE, or UMAP when ``umap`` is
importable) of the features the run's evaluation assigns from, loss and metric curves per
stage, the resolved recipe and the versions.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from corekit.baseline import baseline_line  # noqa: E402
from corekit.embedding import Undrawable, embed  # noqa: E402
from corekit.engine.metrics_log import read_metrics  # noqa: E402
from corekit.errors import UserError  # noqa: E402
from corekit.run_files import read_json  # noqa: E402

REPORT_DIR = "report"
GRID_IMAGES = 16
"""Sample images shown per cluster (highest confidence first)."""
GRID_COLUMNS = 8
MAX_GRID_CLUSTERS = 60
"""Clusters with a sample grid (the largest); the others are listed by size only."""
TILE = 40
"""Smallest side, in pixels, of one sample image in a grid (small images are scaled up)."""
MAX_TILE = 96
EMBED_POINTS = 1000
"""Images in the embedding plot (a seeded random subsample when the run has more)."""
TABLE_LIMIT = (30, 40)
"""Largest confusion matrix (classes, clusters) also shown as an HTML table."""
METRIC_KEYS = ("nmi", "acc", "ari")


class Missing(Exception):  # noqa: N818 - a reason, not a failure
    """A section that cannot be made for a reason the page states as it is."""


@attrs.define
class Assignments:
    """``assignments.csv``: cluster, confidence, image name and label (or None) per image;
    ``classes``: the class names (label ``i`` is ``classes[i]``), where the set has them."""

    cluster: np.ndarray
    confidence: np.ndarray
    images: list[str]
    labels: np.ndarray | None
    classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.cluster)

    def class_name(self, label: int) -> str:
        """The name of class ``label``: its folder's name, else its number."""
        return self.classes[label] if self.classes and label < len(self.classes) else str(label)


def read_assignments(path: Path) -> Assignments:
    if not path.exists():
        raise Missing("the run has no assignments.csv (was training interrupted?)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise Missing("assignments.csv holds no rows")
    labels, classes = None, None
    column = "label_index" if "label_index" in rows[0] else "label"
    if column in rows[0] and all(r[column] != "" for r in rows):
        labels = np.array([int(r[column]) for r in rows], dtype=np.int64)
    if labels is not None and column == "label_index":
        named = {int(r["label_index"]): r["label"] for r in rows}
        classes = [named.get(i, str(i)) for i in range(int(labels.max()) + 1)]
    return Assignments(np.array([int(r["cluster"]) for r in rows], dtype=np.int64),
                       np.array([float(r["confidence"]) for r in rows], dtype=np.float64),
                       [r.get("image", "") for r in rows], labels, classes)


def confusion_matrix(labels: np.ndarray, cluster: np.ndarray,
                     n_clusters: int) -> tuple[np.ndarray, list[int], list[tuple[int, int]]]:
    """Counts (classes × clusters) with the clusters in Hungarian order: the cluster matched
    to class 0 first, then the one matched to class 1, ..., then the unmatched clusters by
    size. Returns the reordered counts, the cluster ids of its columns and the matched
    (class, cluster) pairs."""
    from scipy.optimize import linear_sum_assignment

    n_classes = int(labels.max()) + 1
    n_clusters = max(n_clusters, int(cluster.max()) + 1)
    counts = np.zeros((n_classes, n_clusters), dtype=np.int64)
    np.add.at(counts, (labels, cluster), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    pairs = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
    matched = [c for _, c in pairs]
    rest = sorted(set(range(n_clusters)) - set(matched), key=lambda c: (-counts[:, c].sum(), c))
    order = matched + rest
    return counts[:, order], order, pairs


class Context:
    """What the sections read, loaded once and on first use; a load that failed raises its
    error again in every section that needs it."""

    def __init__(self, run_dir: Path, plugins: Any | None, out: Path) -> None:
        self.run_dir = run_dir
        self.out = out
        self._plugins = plugins
        self._cache: dict[str, Any] = {}
        self.notes: dict[str, float] = {}

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            try:
                self._cache[key] = (True, make())
            except Exception as exc:  # noqa: BLE001 - kept and raised where it is needed
                self._cache[key] = (False, exc)
        ok, value = self._cache[key]
        if not ok:
            raise value
        return value

    def json(self, name: str) -> dict[str, Any]:
        path = self.run_dir / name
        if not path.exists():
            raise Missing(f"the run has no {name}")
        return self._once(name, lambda: read_json(path))

    @property
    def plugins(self) -> Any:
        def load() -> Any:
            from corekit.plugins import get_plugins

            return self._plugins if self._plugins is not None else get_plugins()
        return self._once("plugins", load)

    @property
    def assignments(self) -> Assignments:
        return self._once("assignments",
                          lambda: read_assignments(self.run_dir / "assignments.csv"))

    @property
    def recipe(self) -> Any:
        def load() -> Any:
            from corekit.run_files import load_run_recipe

            if not (self.run_dir / "recipe.toml").exists():
                raise Missing("the run has no recipe.toml")
            return load_run_recipe(self.run_dir)
        return self._once("recipe", load)

    @property
    def n_clusters(self) -> int:
        def count() -> int:
            assigned = int(self.assignments.cluster.max()) + 1
            try:
                return max(assigned, int(self.model.data["n_clusters"]))
            except Exception:  # noqa: BLE001 - the assignments alone still give a count
                return assigned
        return self._once("n_clusters", count)

    @property
    def model(self) -> Any:
        def load() -> Any:
            from corekit.predict import load_trained

            return load_trained(self.run_dir, self.plugins)
        return self._once("model", load)

    @property
    def data(self) -> Any:
        return self._once("data", self._load_data)

    def _load_data(self) -> Any:
        """The images of the last stage as the run saw them (same set, subset and seed),
        checked against assignments.csv."""
        from corekit.data import load_dataset

        t0 = time.perf_counter()
        stage = self.recipe.stages[-1]
        data = load_dataset(stage.data.trained_on(), loaders=self.plugins.datasets())
        if stage.data.subset:
            data = data.subset(stage.data.subset, stage.train.seed)
        assigned = self.assignments
        if len(data) != len(assigned):
            raise Missing(f"the data reloaded with the run's recipe has {len(data)} images, "
                          f"assignments.csv {len(assigned)}: the data set changed since the run")
        names = getattr(data, "names", None)
        if names is not None and any(assigned.images) and list(names) != assigned.images:
            raise Missing("the image files reloaded with the run's recipe are not those of "
                          "assignments.csv: the folder changed since the run")
        labels = getattr(data, "labels", None)
        if labels is not None and assigned.labels is not None and \
                not np.array_equal(labels.cpu().numpy(), assigned.labels):
            raise Missing("the labels of the data reloaded with the run's recipe are not those "
                          "of assignments.csv: the data set changed since the run")
        self.notes["load data"] = time.perf_counter() - t0
        return data


def _loaded(get: Callable[[], Any], what: str) -> Any:
    """``get()``, its failure restated as the reason the section is missing."""
    try:
        return get()
    except Missing:
        raise
    except Exception as exc:
        raise Missing(f"{what} could not be loaded again: {_reason(exc)}") from exc


def _save(fig: Any, path: Path, dpi: int = 80) -> None:
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _img(name: str, alt: str, width: int | None = None) -> str:
    size = f' style="max-width:{width}px"' if width else ""
    return f'<img src="{html.escape(name)}" alt="{html.escape(alt)}"{size}>'


def _table(rows: list[tuple[str, str]], head: tuple[str, str] | None = None) -> str:
    header = f"<tr><th>{head[0]}</th><th>{head[1]}</th></tr>" if head else ""
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                   for k, v in rows)
    return f"<table>{header}{body}</table>"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def epochs_run(run_dir: Path, stage: str) -> int | None:
    """The epochs stage ``stage`` ran, from its ``plan.json`` (None: not trained)."""
    path = run_dir / "stages" / stage / "plan.json"
    return read_json(path).get("epochs_run") if path.exists() else None


def epochs_text(run_dir: Path, stage: dict[str, Any]) -> str:
    """The epochs stage ``stage`` (of ``run.json``) ran, from its ``plan.json``, with the
    recipe's count where they differ (a budget decided them)."""
    ran = epochs_run(run_dir, str(stage["name"]))
    if ran is None:
        return f"{stage['epochs']} epochs (as the recipe states; not trained)"
    return f"{ran} epochs" + (f" ran (the recipe states {stage['epochs']})"
                              if ran != stage["epochs"] else "")


# --- the sections ----------------------------------------------------------------------------


def section_what_ran(ctx: Context) -> str:
    info = ctx.json("run.json")
    rows = [("recipe", str(info.get("recipe"))), ("preset", str(info.get("preset"))),
            ("seed", ", ".join(map(str, info.get("seeds", []))))]
    rows += [(f"stage {s['name']}", f"{s['data']}, {epochs_text(ctx.run_dir, s)}")
             for s in info.get("stages", [])]
    if info.get("command"):
        rows.append(("command", str(info["command"])))
    return _table(rows)


def section_metrics(ctx: Context) -> str:
    final = ctx.json("final.json")
    rows = [(k, _value(v)) for k, v in final.items() if not isinstance(v, (list, dict))]
    note = ""
    if not any(k in final for k in METRIC_KEYS):
        note = "<p>No NMI/ACC/ARI: the data set has no labels.</p>"
    line = baseline_line(final)
    if line:
        note += f'<p id="baseline">{html.escape(line)}.</p>'
    return _table(rows, ("metric", "value")) + note


def section_sizes(ctx: Context) -> str:
    a = ctx.assignments
    k = ctx.n_clusters
    sizes = np.bincount(a.cluster, minlength=k)
    fig, ax = plt.subplots(figsize=(min(14.0, max(4.0, 0.3 * k + 1.5)), 2.6))
    ax.bar(np.arange(k), sizes, color="#4878a8")
    ax.set_xlabel("cluster")
    ax.set_ylabel("images")
    if k <= 40:
        ax.set_xticks(np.arange(k))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, ctx.out / "sizes.png")
    empty = [str(i) for i in np.flatnonzero(sizes == 0)]
    text = (f"{len(a)} images in {k} clusters; largest {sizes.max()} "
            f"({sizes.max() / len(a):.0%}), smallest {sizes.min()}")
    text += f"; empty: {', '.join(empty)}" if empty else "; none empty"
    return f"<p>{html.escape(text)}.</p>" + _img("sizes.png", "images per cluster")


def _tiles(images: np.ndarray) -> np.ndarray:
    """Float N×C×H×W in [0,1] → uint8 N×h×w×3, scaled (nearest) to at least ``TILE``."""
    from PIL import Image

    x = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    if x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    elif x.shape[3] != 3:
        x = np.repeat(x[..., :1], 3, axis=3)
    side = max(x.shape[1], x.shape[2])
    if side < TILE:
        f = math.ceil(TILE / side)
        x = x.repeat(f, axis=1).repeat(f, axis=2)
    elif side > MAX_TILE:
        scale = MAX_TILE / side
        w, h = max(1, round(x.shape[2] * scale)), max(1, round(x.shape[1] * scale))
        x = np.stack([np.asarray(Image.fromarray(t).resize((w, h), Image.BILINEAR)) for t in x])
    return x


def _grid(tiles: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    n, h, w, _ = tiles.shape
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h,
            pad + c * (w + pad):pad + c * (w + pad) + w] = tile
    return out


def section_samples(ctx: Context) -> str:
    import torch
    from PIL import Image

    a = ctx.assignments
    data = _loaded(lambda: ctx.data, "the run's data")
    k = ctx.n_clusters
    sizes = np.bincount(a.cluster, minlength=k)
    shown = [int(c) for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0]
    shown = sorted(shown[:MAX_GRID_CLUSTERS])
    picks = {}
    for c in shown:
        members = np.flatnonzero(a.cluster == c)
        picks[c] = members[np.argsort(-a.confidence[members], kind="stable")][:GRID_IMAGES]
    order = np.concatenate([picks[c] for c in shown])
    images = data.batch(torch.as_tensor(order, dtype=torch.long)).cpu().numpy()
    tiles = _tiles(images)
    folder = ctx.out / "clusters"
    folder.mkdir(exist_ok=True)
    cards, start = [], 0
    for c in shown:
        n = len(picks[c])
        name = f"clusters/cluster-{c:03d}.png"
        Image.fromarray(_grid(tiles[start:start + n], GRID_COLUMNS)).save(ctx.out / name)
        start += n
        members = a.cluster == c
        caption = (f"cluster {c}: {sizes[c]} images ({sizes[c] / len(a):.0%}), "
                   f"mean confidence {a.confidence[members].mean():.2f}")
        if a.labels is not None:
            top = np.bincount(a.labels[members]).argmax()
            share = float((a.labels[members] == top).mean())
            caption += f"; mostly class {a.class_name(int(top))} ({share:.0%})"
        cards.append(f'<figure class="card">{_img(name, f"cluster {c}")}'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    notes = [f"Up to {GRID_IMAGES} images per cluster, highest confidence first."]
    empty = [str(c) for c in range(k) if sizes[c] == 0]
    if empty:
        notes.append(f"Empty clusters: {', '.join(empty)}.")
    left = sorted(set(range(k)) - set(shown) - {int(e) for e in empty})
    if left:
        notes.append(f"{len(left)} smaller clusters have no grid (only the largest "
                     f"{MAX_GRID_CLUSTERS} do): {', '.join(map(str, left))}.")
    return f"<p>{html.escape(' '.join(notes))}</p><div class=\"cards\">{''.join(cards)}</div>"


def section_confusion(ctx: Context) -> str:
    a = ctx.assignments
    if a.labels is None:
        raise Missing("no labels: the run's data set has no ground-truth classes (e.g. a flat "
                      "image folder), so assignments.csv has no label column and there is "
                      "nothing to compare the clusters with")
    counts, order, pairs = confusion_matrix(a.labels, a.cluster, ctx.n_clusters)
    n_classes, n_clusters = counts.shape
    with open(ctx.out / "confusion.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class \\ cluster", *order])
        writer.writerows([a.class_name(i), *row] for i, row in enumerate(counts.tolist()))
    matched = {(r, order.index(c)) for r, c in pairs}
    hits = sum(counts[r, j] for r, j in matched)
    fig, ax = plt.subplots(figsize=(min(14.0, max(4.0, 0.42 * n_clusters + 1.8)),
                                    min(14.0, max(3.0, 0.36 * n_classes + 1.2))))
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    if n_classes * n_clusters <= 400:
        for r in range(n_classes):
            for j in range(n_clusters):
                if counts[r, j]:
                    ax.text(j, r, str(counts[r, j]), ha="center", va="center", fontsize=7,
                            color="white" if share[r, j] > 0.5 else "black")
    if n_clusters <= 40:
        ax.set_xticks(np.arange(n_clusters), [str(c) for c in order], fontsize=7)
    if n_classes <= 40:
        ax.set_yticks(np.arange(n_classes), [a.class_name(r) for r in range(n_classes)],
                      fontsize=7)
    ax.set_xlabel("cluster (Hungarian order)")
    ax.set_ylabel("class")
    fig.tight_layout()
    _save(fig, ctx.out / "confusion.png")
    text = (f"Rows: the {n_classes} classes; columns: the {n_clusters} clusters, each class's "
            f"Hungarian-matched cluster on the diagonal. Matched: {hits} of {len(a)} images "
            f"(ACC {hits / len(a):.4f}). Shading: share of the class. Counts also in "
            "confusion.csv.")
    parts = [f"<p>{html.escape(text)}</p>", _img("confusion.png", "confusion matrix")]
    if n_classes <= TABLE_LIMIT[0] and n_clusters <= TABLE_LIMIT[1]:
        head = "".join(f"<th>{c}</th>" for c in order)
        body = "".join(
            f"<tr><th>{html.escape(a.class_name(r))}</th>" + "".join(
                f'<td class="{"hit" if (r, j) in matched else ""}">{counts[r, j]}</td>'
                for j in range(n_clusters)) + "</tr>"
            for r in range(n_classes))
        parts.append(f'<table class="confusion" id="confusion-table"><tr><th>class \\ cluster'
                     f"</th>{head}</tr>{body}</table>")
    parts.append('<p><a href="confusion.csv">confusion.csv</a></p>')
    return "".join(parts)


def features(model: Any, data: Any, indices: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The features the run's evaluation assigns from (``model.part``, as ``predict`` computes
    them: a head's probabilities, or the clustered features, normalised when the clusterer
    normalises), for the images ``indices`` of ``data``."""
    import torch
    from torch import nn

    out = []
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            chunk = torch.as_tensor(indices[start:start + batch_size], dtype=torch.long)
            images = model.transform(data.batch(chunk).cpu())
            out.append(model.network.compute(model.part, images, {}).float())
        x = torch.cat(out)
        if model.centroids is None:
            if model.network.produces(model.part) == "logits":
                x = x.softmax(dim=1)
        elif model.normalize:
            x = nn.functional.normalize(x, dim=1)
    return x.flatten(1).numpy()


def _scatter(ax: Any, xy: np.ndarray, values: np.ndarray, title: str) -> None:
    n = int(values.max()) + 1
    if n <= 20:
        cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
        colours = cmap(values % cmap.N)
    else:
        colours = plt.get_cmap("gist_ncar")(values / (n - 1))
    ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=4, linewidths=0)
    if n <= 40:
        for v in np.unique(values):
            centre = np.median(xy[values == v], axis=0)
            ax.text(centre[0], centre[1], str(v), fontsize=8, weight="bold", ha="center",
                    va="center", bbox={"boxstyle": "round,pad=0.15", "fc": "white",
                                       "alpha": 0.7, "lw": 0})
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def section_embedding(ctx: Context) -> str:
    a = ctx.assignments
    if len(a) < 10:
        raise Missing(f"too few images ({len(a)}) for an embedding")
    data = _loaded(lambda: ctx.data, "the run's data")
    model = _loaded(lambda: ctx.model, "the run's trained network")
    rng = np.random.default_rng(0)
    picked = np.arange(len(a))
    if len(a) > EMBED_POINTS:
        picked = np.sort(rng.choice(len(a), EMBED_POINTS, replace=False))
    t0 = time.perf_counter()
    x = features(model, data, picked)
    ctx.notes["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        xy, method = embed(x)
    except Undrawable as exc:
        raise Missing(str(exc)) from None
    ctx.notes[method] = time.perf_counter() - t0
    panels = [(a.cluster[picked], "coloured by cluster")]
    if a.labels is not None:
        panels.append((a.labels[picked], "coloured by class"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    for ax, (values, title) in zip(axes[0], panels, strict=True):
        _scatter(ax, xy, values, title)
    fig.tight_layout()
    _save(fig, ctx.out / "embedding.png")
    part = f"{model.branch}:{model.part}"
    what = "the cluster head's probabilities" if model.centroids is None else \
        "the features the clusterer assigns from"
    text = (f"{method} of {part} ({what}, {x.shape[1]}-d) of {len(picked)} of the {len(a)} "
            f"images, from the network of stage {model.stage.name}.")
    if a.labels is None:
        text += " No labels: coloured by cluster only."
    return f"<p>{html.escape(text)}</p>" + _img("embedding.png", "2-D embedding")


def section_curves(ctx: Context) -> str:
    records = read_metrics(ctx.run_dir)
    if not records:
        raise Missing("metrics.jsonl holds no epoch records")
    stages: dict[str, list[dict]] = {}
    for r in records:
        stages.setdefault(str(r.get("stage", "main")), []).append(r)
    try:
        terms = {s.name: list(s.losses) for s in ctx.recipe.stages}
    except Exception:  # noqa: BLE001 - the total loss is still plotted
        terms = {}
    has_metrics = any(k in r for r in records for k in METRIC_KEYS)
    cols = 2 if has_metrics else 1
    fig, axes = plt.subplots(len(stages), cols, figsize=(4.6 * cols, 2.6 * len(stages)),
                             squeeze=False)
    for row, (name, recs) in zip(axes, stages.items(), strict=True):
        for key in ["loss", *terms.get(name, [])]:
            points = [(r["epoch"], r[key]) for r in recs if isinstance(r.get(key), (int, float))]
            if points:
                x, y = zip(*points, strict=True)
                row[0].plot(x, y, marker="o", markersize=3, label=key,
                            lw=2 if key == "loss" else 1)
        row[0].set_title(f"stage {name}: losses", fontsize=9)
        row[0].legend(fontsize=7)
        if has_metrics:
            for key in METRIC_KEYS:
                points = [(r["epoch"], r[key]) for r in recs if key in r]
                if points:
                    x, y = zip(*points, strict=True)
                    row[1].plot(x, y, marker="o", markersize=3, label=key.upper())
            row[1].set_title(f"stage {name}: metrics", fontsize=9)
            row[1].set_ylim(0, 1)
            row[1].legend(fontsize=7)
        epochs = [r["epoch"] for r in recs if "epoch" in r] or [1]
        for ax in row:
            ax.set_xlabel("epoch", fontsize=8)
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, ctx.out / "curves.png")
    note = f"{len(records)} epoch record(s) in metrics.jsonl"
    if not has_metrics:
        note += "; no NMI/ACC/ARI curves: the data set has no labels"
    return f"<p>{html.escape(note)}.</p>" + _img("curves.png", "loss and metric curves")


def section_recipe(ctx: Context) -> str:
    path = ctx.run_dir / "recipe.toml"
    if not path.exists():
        raise Missing("the run has no recipe.toml")
    return f"<pre>{html.escape(path.read_text())}</pre>"


def section_versions(ctx: Context) -> str:
    info = ctx.json("versions.json")
    rows = []
    for key, value in info.items():
        if isinstance(value, dict):
            rows += [(f"{key}: {k}", str(v)) for k, v in value.items()]
        else:
            rows.append((key, str(value)))
    return _table(rows)


SECTIONS: list[tuple[str, str, Callable[[Context], str]]] = [
    ("what-ran", "What ran", section_what_ran),
    ("metrics", "Final metrics", section_metrics),
    ("sizes", "Cluster sizes", section_sizes),
    ("samples", "Samples per cluster", section_samples),
    ("confusion", "Confusion matrix", section_confusion),
    ("embedding", "Embedding", section_embedding),
    ("curves", "Loss and metric curves", section_curves),
    ("recipe", "Resolved recipe (recipe.toml)", section_recipe),
    ("versions", "Versions", section_versions),
]

CSS = """
body{font-family:sans-serif;margin:24px;max-width:1150px;color:#222;background:#fff}
h1{font-size:22px} h2{font-size:17px;border-bottom:1px solid #ccc;padding-bottom:3px;
margin-top:28px} table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:2px 7px;text-align:left}
table.confusion td{text-align:right} td.hit{font-weight:bold;background:#dde8f3}
pre{background:#f4f4f4;padding:8px;font-size:12px;overflow-x:auto}
.missing{background:#fff4d6;border:1px solid #e0c060;padding:6px 12px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{margin:0;border:1px solid #ddd;padding:4px}
figcaption{font-size:12px;max-width:400px} img{max-width:100%}
nav a{margin-right:10px;font-size:13px}
"""


@attrs.define
class HtmlReport:
    """Where the page is, which sections are missing and why, how long it took, and what the
    console should say about the run (``warnings``: e.g. that it collapsed)."""

    path: Path
    missing: list[tuple[str, str]]
    seconds: float
    timings: dict[str, float]
    warnings: list[str] = attrs.field(factory=list)


def collapse_warning(ctx: Context) -> str | None:
    """For a run that put all its images in one of several clusters: that it did and what to
    try (the learning rate and epochs of its last stage, where its recipe still loads)."""
    try:
        collapsed = len(np.unique(ctx.assignments.cluster)) == 1 and ctx.n_clusters > 1
    except Exception:  # noqa: BLE001 - no assignments: the page says why
        return None
    if not collapsed:
        return None
    try:
        stage = ctx.recipe.stages[-1]
        lr = stage.train.optimizer.lr
        epochs = epochs_run(ctx.run_dir, stage.name) or stage.train.epochs
    except Exception:  # noqa: BLE001 - the advice without the run's values
        return ("all images in one cluster; try a lower learning rate "
                "(train.optimizer.lr) or more epochs (train.epochs)")
    return (f"all images in one cluster; try a lower learning rate, e.g. --set "
            f"train.optimizer.lr={lr / 10:.3g} (this run: {lr:g}), or more epochs (this run: "
            f"{epochs})")


def _reason(exc: BaseException) -> str:
    """Why ``exc`` was raised: its message, with its type where the message is not written
    for a user (a :class:`Missing` or a ``UserError``)."""
    text = str(exc).strip() or "(no message)"
    return text if isinstance(exc, (Missing, UserError)) else f"{type(exc).__name__}: {text}"


def _private(run_dir: Path) -> list[tuple[str, str]]:
    """(text, replacement) for the paths of this machine that must not reach the page."""
    pairs = []
    local = run_dir / "local.json"
    if local.exists():
        try:
            for real in json.loads(local.read_text()).get("data", {}).values():
                _, _, path = real.partition(":")
                if path:
                    pairs.append((str(Path(path).expanduser().resolve()), Path(path).name))
                    pairs.append((path, Path(path).name))
        except Exception:  # noqa: BLE001 - an unreadable local.json hides nothing
            pass
    pairs.append((str(run_dir.resolve()), "RUN"))
    pairs.append((str(run_dir), "RUN"))
    pairs.append((str(Path.home()), "~"))
    return sorted(set(pairs), key=lambda p: -len(p[0]))


def _redact(text: str, private: list[tuple[str, str]]) -> str:
    for real, shown in private:
        if real and real not in (".", "/"):
            text = text.replace(real, shown)
    return text


REPORT_FILES = ("index.html", "sizes.png", "confusion.csv", "confusion.png", "embedding.png",
                "curves.png")
"""The files a report writes in ``report/``, besides its cluster grids
(``clusters/cluster-NNN.png``)."""


def remove_report_files(out: Path) -> None:
    """Remove an earlier report's own files from ``out``; a user's files there stay."""
    for name in REPORT_FILES:
        (out / name).unlink(missing_ok=True)
    grids = out / "clusters"
    for grid in grids.glob("cluster-[0-9][0-9][0-9].png"):
        grid.unlink()
    if grids.is_dir() and not any(grids.iterdir()):
        grids.rmdir()


def write_html_report(run_dir: Path, plugins: Any | None = None, out: Path | None = None,
                      note: str = "") -> HtmlReport:
    """Write ``run_dir/report/index.html`` (or ``out/index.html``) and its PNG files
    (replacing an earlier report's files, and nothing else a user keeps in the folder), with
    ``note`` under the title. A section that cannot be made is replaced by its reason; nothing
    here raises for it."""
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_DIR
    remove_report_files(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(run_dir, plugins, out)
    private = _private(run_dir)
    body, missing, timings = [], [], {}
    for key, title, make in SECTIONS:
        started = time.perf_counter()
        try:
            content = make(ctx)
        except Exception as exc:  # noqa: BLE001 - the page says what is missing and why
            plt.close("all")
            why = _redact(_reason(exc) if isinstance(exc, (Missing, UserError)) else
                          f"could not be made: {_reason(exc)}", private)
            missing.append((title, why))
            content = f'<p class="missing">Not in this report: {html.escape(why)}</p>'
        timings[title] = time.perf_counter() - started
        body.append(f'<section id="{key}"><h2>{html.escape(title)}</h2>{content}</section>')
    timings.update(ctx.notes)
    warnings = [w for w in [collapse_warning(ctx)] if w]
    final = run_dir / "final.json"
    try:
        name = json.loads(final.read_text()).get("recipe", run_dir.name)
    except Exception:  # noqa: BLE001 - the title falls back to the folder's name
        name = run_dir.name
    nav = "".join(f'<a href="#{key}">{html.escape(title.split(" (")[0])}</a>'
                  for key, title, _ in SECTIONS)
    files = [f for f in ("assignments.csv", "metrics.jsonl", "final.json", "recipe.toml",
                         "run.json", "report.md") if (run_dir / f).exists()]
    up = Path(os.path.relpath(run_dir, out))
    links = " ".join(f'<a href="{html.escape((up / f).as_posix())}">{f}</a>' for f in files)
    summary = ""
    if missing:
        items = "".join(f"<li><b>{html.escape(t)}</b>: {html.escape(w)}</li>"
                        for t, w in missing)
        summary = f'<div class="missing" id="missing"><p>Missing from this report:</p>' \
                  f"<ul>{items}</ul></div>"
    intro = f'<p id="note">{html.escape(note)}</p>' if note else ""
    intro += "".join(f'<p class="missing" id="warning">{html.escape(w[:1].upper() + w[1:])}.</p>'
                     for w in warnings)
    seconds = time.perf_counter() - t0
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Run report: {html.escape(str(name))}</title><style>{CSS}</style></head>"
            f"<body><h1>Run report: {html.escape(str(name))}</h1>{intro}<nav>{nav}</nav>"
            f"{summary}"
            f"{''.join(body)}<hr><p>Run files: {links}. Made by <code>deepclust report</code> "
            f"in {seconds:.1f} s, {time.strftime('%Y-%m-%d %H:%M:%S')}.</p></body></html>\n")
    path = out / "index.html"
    path.write_text(page)
    return HtmlReport(path, missing, seconds, timings, warnings)
