"""Anatomy of one engine step, and the engine against a hand-written loop.

Part 1 (anatomy). For each backbone the ``simclr-kmeans`` recipe is composed (``small_cnn``:
its ``mnist`` preset, 1×28×28, batch 256; ``resnet18_cifar``: the same recipe with the backbone
swapped, 3×32×32, batch ``--resnet-batch``) and the parts of one M-step are run one after the
other on the same tensors, each timed on its own:

    data       ImageSet.batch(indices): uint8 gather -> float32 in [0, 1]
    augment    the two SimCLR view pipelines (kornia, on the CPU)
    to_cl      .contiguous(channels_last) of both views (channels_last configs only)
    forward    backbone + projector on both views and the NT-Xent loss (under autocast for bf16)
    backward   zero_grad + loss.backward()
    optimizer  Adam step
    ema        EMA.update of a BYOL-style target over backbone + projector (not part of
               a simclr-kmeans step; shown for recipes that have a target)

Shares are of ``data + augment + to_cl + forward + backward + optimizer`` (the simclr step).
The E-step (eval-transform features of N images + k-means, as ``StageTrainer.cluster``) is
timed once per precision (``--estep-precisions``, channels_last off); its amortised cost per
step, if run every epoch over those N images, is ``seconds · batch / N`` (derived, not timed).
Configs: fp32 and bf16 autocast (bf16 only on a CPU with bf16 instructions: emulated bf16 is
orders of magnitude slower); for the ResNet also channels_last on and off. ``small_cnn``
uses the real MNIST images when ``../shared/data/mnist`` exists (k-means iterations depend on
the data), else uniform noise; ``resnet18_cifar`` always uses uniform-noise 32×32 RGB images
(no CIFAR offline; every timed part but k-means is data-independent). All configs of a
backbone are stepped round-robin, so load drift on the shared machine hits them alike.

Part 2 (engine vs bare loop). ``StageTrainer.train_step`` of the composed stage against a
hand-written loop with deep copies of the same backbone and projector, the same view pipelines,
the same ``nt_xent`` and a plain Adam step (``images[idx] / 255 -> views -> forward -> loss ->
zero_grad/backward/step``), on the same indices. Rounds alternate which runs first (engine,
bare, bare, engine, ...) to cancel drift of the shared machine's load; the ratio is
``engine seconds / bare seconds`` per round (median reported) and over all rounds, for wall time
and for process CPU time (less sensitive to waiting for a core on the loaded machine).

Part 3 (``--cpu-presets``, instead of parts 1 and 2). The CPU presets (``digits`` and ``mnist``)
of ``cc``, ``propos``, ``hadis`` and ``simclr-kmeans`` (the installed ones), each stage
resolved and composed by the toolkit and stepped by ``StageTrainer.train_step`` with the
engine's phase timer (``train.time_phases``: data, augment, forward, backward, optimizer,
after_step; the E-step runs once before the steps and is not counted), fp32. With
``--before-views FILE`` a second composition of the same stage gets its view pipelines from the
factories of the augment module in FILE (e.g. the kornia op-per-transform pipelines of an
earlier commit, ``git show REV:corekit/components/augment.py > FILE``), and the two are stepped
in turn (order alternating) on the same batches: the "before" and "after" columns are
measured side by side. The share of a phase is its median seconds over the median step.

    python bench/step_anatomy.py --quick
    python bench/step_anatomy.py --resnet-batch 256 --repeats 5
    python bench/step_anatomy.py --cpu-presets --threads 1 --before-views /tmp/augment_before.py

Prints markdown tables and writes ``bench/results/step_anatomy.json`` (part 3:
``bench/results/step_anatomy_presets.json``).
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import copy  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import inspect  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    THREADS,
    Timer,
    environment,
    finish,
    fmt,
    load_line,
    median,
    mnist_or_noise,
    noise_set,
    pct,
    precisions,
    setup,
    table,
    write_json,
)

from corekit import recipe as rc  # noqa: E402
from corekit.components.losses import nt_xent  # noqa: E402
from corekit.composer import compose  # noqa: E402
from corekit.data import ImageSet, load_dataset  # noqa: E402
from corekit.engine.devices import autocast  # noqa: E402
from corekit.engine.phases import PHASES  # noqa: E402
from corekit.engine.trainer import StageTrainer  # noqa: E402
from corekit.plugins import get_plugins  # noqa: E402
from corekit.state import EMA  # noqa: E402

setup()

CPU = torch.device("cpu")
STEP_PARTS = ("data", "augment", "to_cl", "forward", "backward", "optimizer")
STEP_PHASES = tuple(p for p in PHASES if p != "estep")
PRESET_RECIPES = ("cc", "propos", "hadis", "simclr-kmeans")
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


# -- data and the composed stage -----------------------------------------------------------
def dataset_for(backbone: str) -> tuple[ImageSet, str]:
    if backbone == "small_cnn":
        return mnist_or_noise()
    return noise_set(50_000, 3, 32), "uniform noise 3×32×32 (CIFAR-sized)"


def stage_raw(backbone: str, batch: int, precision: str, channels_last: bool,
              steps: int | None = None) -> dict[str, Any]:
    """``simclr-kmeans`` (``mnist`` preset for small_cnn; backbone swapped for the ResNet)."""
    raw = rc.select_data(rc.resolve_raw("simclr-kmeans", get_plugins().find_recipe), "mnist")
    raw = copy.deepcopy(raw)
    raw.pop("presets", None)
    if backbone != "small_cnn":
        raw["model"]["backbone"] = {"type": backbone}
        raw["augment"]["size"] = 32
    layout = "channels_last" if channels_last else "contiguous"
    raw["train"].update(batch_size=batch, precision=precision, memory_format=layout,
                        device="cpu", epochs=1, steps_per_epoch=steps, checkpoint_every=0)
    return raw


def composed_stage(backbone: str, data: ImageSet, batch: int, precision: str,
                   channels_last: bool) -> Any:
    torch.manual_seed(0)
    recipe = rc.validate(stage_raw(backbone, batch, precision, channels_last))
    stage = recipe.stages[0]
    return compose(get_plugins(), stage, lambda _name: data, CPU, None, 1)


def describe_recipe(raw: dict[str, Any]) -> str:
    m, a, t = raw["model"], raw["augment"], raw["train"]
    bb = ", ".join(f"{k}={v}" for k, v in m["backbone"].items())
    proj = m["heads"]["proj"]
    return (f"backbone {{{bb}}}, projector {proj['hidden']}->{proj['out_dim']}, "
            f"simclr views size {a['size']} crop_scale {a.get('crop_scale')}, nt_xent, "
            f"{t['optimizer']['type']} lr {t['optimizer']['lr']}")


# -- part 1: anatomy ------------------------------------------------------------------------
class Anatomy:
    """One config (backbone, batch, precision, channels_last) of the composed stage, stepped
    part by part; configs of a backbone are stepped in turn so load drift hits them alike."""

    def __init__(self, backbone: str, data: ImageSet, batch: int, precision: str,
                 channels_last: bool) -> None:
        self.backbone, self.data, self.batch = backbone, data, batch
        self.precision, self.channels_last = precision, channels_last
        self.composed = composed_stage(backbone, data, batch, precision, channels_last)
        self.ema = EMA(self.composed.model.online, ["proj"], 0.99)
        self.order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
        self.timer = Timer()
        self.rep = 0
        self.composed.model.online.train()

    def step(self, timed: bool) -> None:
        c, net, batch = self.composed, self.composed.model.online, self.batch
        start = (self.rep * batch) % (len(self.data) - batch)
        idx = self.order[start:start + batch]
        self.rep += 1
        t = self.timer if timed else Timer()
        with t("data"):
            x = self.data.batch(idx)
        with t("augment"):
            views = [pipeline(x) for pipeline in c.views.values()]
        if self.channels_last:
            with t("to_cl"):
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        with t("forward"):
            with autocast(CPU, DTYPES[self.precision]):
                z = [net.compute("proj", v, {}).float() for v in views]
                loss = nt_xent(z[0], z[1], 0.5)
        with t("backward"):
            c.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with t("optimizer"):
            c.optimizer.step()
        with t("ema"):
            self.ema.update(net, self.ema.momentum(self.rep))

    def result(self, estep_n: int) -> dict[str, Any]:
        parts = {name: median(s) for name, s in self.timer.samples.items()}
        step = sum(parts.get(p, 0.0) for p in STEP_PARTS)
        batch = self.batch
        row: dict[str, Any] = {
            "backbone": self.backbone, "batch": batch, "precision": self.precision,
            "channels_last": self.channels_last, "repeats": len(self.timer.samples["data"]),
            "samples": self.timer.samples, "median_seconds": parts, "step_seconds": step,
            "step_images_per_second": batch / step,
            "shares": {name: parts[name] / step for name in parts},
            "data_aug_share": sum(parts.get(p, 0.0) for p in ("data", "augment", "to_cl")) / step,
            "images_per_second": {name: batch / s for name, s in parts.items()},
        }
        if estep_n:
            row["estep"] = estep(self.composed, self.data, estep_n, self.precision,
                                 self.channels_last, batch)
            row["estep"]["amortised_share"] = row["estep"]["amortised_per_step"] / step
        return row


def anatomy(backbone: str, data: ImageSet, batch: int, configs: list[tuple[str, bool]],
            repeats: int, warmup: int, estep_n: int,
            estep_precisions: list[str]) -> list[dict[str, Any]]:
    """Time every config of ``backbone``, round-robin (order rotated each repetition)."""
    runs = [Anatomy(backbone, data, batch, precision, cl) for precision, cl in configs]
    for rep in range(warmup + repeats):
        shift = rep % len(runs)
        for run in runs[shift:] + runs[:shift]:
            run.step(timed=rep >= warmup)
    return [run.result(estep_n if not run.channels_last and run.precision in estep_precisions
                       else 0) for run in runs]


def estep(c: Any, data: ImageSet, n: int, precision: str, channels_last: bool,
          batch: int) -> dict[str, Any]:
    """``StageTrainer.cluster``'s work on the first ``n`` images: features, normalise, k-means."""
    subset = data if n >= len(data) else ImageSet(
        data.name, data.images[:n], None if data.labels is None else data.labels[:n],
        data.num_classes, data.mean, data.std)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = StageTrainer(c, Path(tmp), CPU, DTYPES[precision], 0, lambda _s: None, False)
        t0 = time.perf_counter()
        feats = trainer.features(c.stage.clusterer.features, subset)
        t1 = time.perf_counter()
        if c.stage.clusterer.normalize:
            feats = torch.nn.functional.normalize(feats, dim=1)
        result = c.clusterer.fit(feats)
        t2 = time.perf_counter()
    seconds = t2 - t0
    return {"n": len(subset), "features_seconds": t1 - t0, "kmeans_seconds": t2 - t1,
            "seconds": seconds, "images_per_second": len(subset) / seconds,
            "kmeans_iterations": result.n_iter,
            "kmeans": {k: v for k, v in c.stage.clusterer.options.items()},
            "amortised_per_step": seconds * batch / len(subset)}


# -- part 2: engine vs bare loop ------------------------------------------------------------
def engine_vs_bare(backbone: str, data: ImageSet, batch: int, rounds: int,
                   steps: int) -> dict[str, Any]:
    c = composed_stage(backbone, data, batch, "fp32", False)
    tmp = tempfile.TemporaryDirectory()
    trainer = StageTrainer(c, Path(tmp.name), CPU, None, 0, lambda _s: None, False)
    c.model.online.train()
    takes_images = "images" in inspect.signature(trainer.train_step).parameters
    engine_gen = torch.Generator().manual_seed(2)

    def engine_step(idx: torch.Tensor) -> None:
        if takes_images:
            trainer.train_step(idx, data.batch(idx), 0, engine_gen)
        else:
            trainer.train_step(idx, 0, engine_gen)

    backbone_net = copy.deepcopy(c.model.online.part("backbone")).train()
    proj = copy.deepcopy(c.model.online.part("proj")).train()
    params = [*backbone_net.parameters(), *proj.parameters()]
    opt_cfg = c.stage.train.optimizer
    bare_opt = torch.optim.Adam(params, lr=opt_cfg.lr, betas=tuple(opt_cfg.betas))
    images, views = data.images, list(c.views.values())
    temperature = c.stage.losses["instance"].options.get("temperature", 0.5)

    def bare_step(idx: torch.Tensor) -> None:
        x = images[idx].float().div_(255.0)
        v = [pipeline(x) for pipeline in views]
        loss = nt_xent(proj(backbone_net(v[0])), proj(backbone_net(v[1])), temperature)
        bare_opt.zero_grad(set_to_none=True)
        loss.backward()
        bare_opt.step()

    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(3))
    cursor = 0

    def next_indices() -> list[torch.Tensor]:
        nonlocal cursor
        out = []
        for _ in range(steps):
            if cursor + batch > len(order):
                cursor = 0
            out.append(order[cursor:cursor + batch])
            cursor += batch
        return out

    def block(fn: Any, chunks: list[torch.Tensor]) -> tuple[float, float]:
        """(wall, process CPU) seconds of one block of steps."""
        t0, c0 = time.perf_counter(), time.process_time()
        for idx in chunks:
            fn(idx)
        return time.perf_counter() - t0, time.process_time() - c0

    warm = next_indices()[:1]
    block(engine_step, warm)
    block(bare_step, warm)
    rows = []
    for r in range(rounds):
        chunks = next_indices()
        first = ("engine", "bare") if r % 2 == 0 else ("bare", "engine")
        times = {}
        for name in first:
            times[name] = block(engine_step if name == "engine" else bare_step, chunks)
        rows.append({"round": r, "first": first[0], "engine_seconds": times["engine"][0],
                     "bare_seconds": times["bare"][0],
                     "ratio": times["engine"][0] / times["bare"][0],
                     "engine_cpu_seconds": times["engine"][1],
                     "bare_cpu_seconds": times["bare"][1],
                     "cpu_ratio": times["engine"][1] / times["bare"][1]})
    tmp.cleanup()
    engine_total = sum(r["engine_seconds"] for r in rows)
    bare_total = sum(r["bare_seconds"] for r in rows)
    cpu_total = (sum(r["engine_cpu_seconds"] for r in rows)
                 / sum(r["bare_cpu_seconds"] for r in rows))
    return {"backbone": backbone, "batch": batch, "precision": "fp32", "rounds": rounds,
            "steps_per_round": steps, "rows": rows,
            "engine_images_per_second": rounds * steps * batch / engine_total,
            "bare_images_per_second": rounds * steps * batch / bare_total,
            "ratio_median": median([r["ratio"] for r in rows]),
            "ratio_total": engine_total / bare_total,
            "ratio_min": min(r["ratio"] for r in rows), "ratio_max": max(r["ratio"] for r in rows),
            "cpu_ratio_total": cpu_total,
            "cpu_ratio_median": median([r["cpu_ratio"] for r in rows]),
            "train_step_takes_images": takes_images}


# -- part 3: CPU presets, before/after view pipelines ---------------------------------------
def load_module(path: Path) -> Any:
    """The Python module in file ``path`` (an augment module of another commit)."""
    spec = importlib.util.spec_from_file_location(f"views_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def views_from(module: Any, c: Any) -> list[torch.nn.Module]:
    """``c``'s view pipelines rebuilt by the same-named factories of ``module`` with the same
    size, channels, mean/std and recipe options."""
    aug = c.stage.augment
    types = aug.type if isinstance(aug.type, list) else [aug.type] * aug.views
    registry = get_plugins().registry
    return [getattr(module, registry.get("augmentation", t).obj.__name__)(
        v.size, v.channels, v.mean, v.std, **aug.options) for t, v in zip(types, c.views.values(),
                                                                         strict=True)]


class PresetRun:
    """One composition of a recipe's CPU preset, stepped by ``train_step`` with phase timing."""

    def __init__(self, recipe: str, preset: str, data: ImageSet, views: Any | None) -> None:
        overrides = ['train.device="cpu"', 'train.precision="fp32"', "train.epochs=1",
                     "train.time_phases=true", "train.checkpoint_every=0"]
        self.stage = rc.resolve(recipe, get_plugins().find_recipe, preset, overrides).stages[0]
        torch.manual_seed(0)
        self.composed = compose(get_plugins(), self.stage, lambda _name: data, CPU, None, 1)
        if views is not None:
            self.composed.views = dict(zip(self.composed.views, views_from(views, self.composed),
                                           strict=True))
        self.tmp = tempfile.TemporaryDirectory()
        self.trainer = StageTrainer(self.composed, Path(self.tmp.name), CPU, None, 0,
                                    lambda _s: None, False)
        self.composed.model.online.train()
        if self.stage.clusterer is not None:
            self.trainer.e_step(0)
        self.trainer.phases.take()
        self.data = data
        self.samples: dict[str, list[float]] = {p: [] for p in STEP_PHASES}

    def step(self, indices: torch.Tensor, generator: torch.Generator, timed: bool) -> None:
        t = self.trainer
        with t.phases("data"):
            images = self.data.batch(indices)
        t.train_step(indices, images, 0, generator)
        seconds = t.phases.take()
        if timed:
            for p in STEP_PHASES:
                self.samples[p].append(seconds.get(f"time_{p}", 0.0))

    def result(self) -> dict[str, Any]:
        self.tmp.cleanup()
        parts = {p: median(s) for p, s in self.samples.items()}
        totals = [sum(s[i] for s in self.samples.values())
                  for i in range(len(self.samples["data"]))]
        step = median(totals)
        return {"median_seconds": parts, "step_seconds": step, "step_samples": totals,
                "samples": self.samples, "shares": {p: v / step for p, v in parts.items()},
                "images_per_second": self.stage.train.batch_size / step}


def preset_anatomy(recipe: str, preset: str, data: ImageSet, before: Any | None, steps: int,
                   warmup: int) -> dict[str, Any]:
    """Both variants of one preset, stepped in turn (order alternating) on the same batches."""
    runs = {"after": PresetRun(recipe, preset, data, None)}
    if before is not None:
        runs = {"before": PresetRun(recipe, preset, data, before), **runs}
    stage = runs["after"].stage
    batch = stage.train.batch_size
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
    generators = {name: torch.Generator().manual_seed(2) for name in runs}
    names = list(runs)
    for k in range(warmup + steps):
        start = (k * batch) % (len(data) - batch + 1)
        indices = order[start:start + batch]
        for name in names if k % 2 == 0 else names[::-1]:
            runs[name].step(indices, generators[name], timed=k >= warmup)
    return {"recipe": recipe, "preset": preset, "batch": batch,
            "backbone": stage.model.backbone.type, "view_size": stage.augment.size,
            "views": len(runs["after"].composed.views), "augment_options": stage.augment.options,
            "steps": steps, **{name: run.result() for name, run in runs.items()}}


def preset_datasets(presets: list[str]) -> dict[str, tuple[ImageSet, str]]:
    sets = {}
    if "digits" in presets:
        sets["digits"] = load_dataset("digits"), "scikit-learn digits (1,797 8×8 images)"
    if "mnist" in presets:
        sets["mnist"] = mnist_or_noise()
    return sets


def cpu_presets(args: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    before = load_module(args.before_views) if args.before_views else None
    names = get_plugins().registry.names("recipe")
    recipes = [r for r in args.recipes if r in names]
    sets = preset_datasets(args.presets)
    rows = []
    for recipe in recipes:
        for preset in args.presets:
            data, _source = sets[preset]
            row = preset_anatomy(recipe, preset, data, before, args.repeats, args.warmup)
            rows.append(row)
            shares = ", ".join(f"{name} {pct(row[name]['shares']['augment'])}"
                               for name in ("before", "after") if name in row)
            print(f"{recipe} {preset}: augment share {shares}", flush=True)
    finish(env)
    settings = {k: getattr(args, k) for k in ("recipes", "presets", "repeats", "warmup",
                                              "threads")}
    if args.before_views:
        digest = hashlib.sha256(args.before_views.read_bytes()).hexdigest()
        settings |= {"before_views": str(args.before_views), "before_views_sha256": digest}
    return {"environment": env, "datasets": {k: v[1] for k, v in sets.items()},
            "settings": settings, "presets": rows}


# -- output ---------------------------------------------------------------------------------
def anatomy_table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        cfg = f"{r['backbone']} b{r['batch']} {r['precision']}" + (" CL" if r["channels_last"]
                                                                    else "")
        for name in (*STEP_PARTS, "ema"):
            if name not in r["median_seconds"]:
                continue
            s = r["median_seconds"][name]
            share = pct(r["shares"][name])
            out.append([cfg, name, f"{1000 * s:.1f}", fmt(r["batch"] / s),
                        share if name != "ema" else f"(+{share})"])
        out.append([cfg, "**step**", f"**{1000 * r['step_seconds']:.1f}**",
                    f"**{fmt(r['step_images_per_second'])}**", "100%"])
        if "estep" in r:
            e = r["estep"]
            out.append([cfg, f"E-step, N={e['n']:,} ({e['kmeans_iterations']} k-means iters; "
                        f"features {e['features_seconds']:.2f} s + k-means "
                        f"{e['kmeans_seconds']:.2f} s)", f"{1000 * e['seconds']:.0f}",
                        fmt(e["images_per_second"]),
                        f"amortised {pct(e['amortised_share'])} / step"])
    return table(["config", "part", "ms (median)", "images/s", "share of step"], out,
                 "llrrr")


def summary_table(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        cl = "on" if r["channels_last"] else "off"
        out.append([r["backbone"], r["batch"], r["precision"], cl,
                    f"{1000 * r['step_seconds']:.0f}", fmt(r["step_images_per_second"]),
                    pct(r["data_aug_share"])])
    return table(["backbone", "batch", "precision", "channels_last", "step ms", "images/s",
                  "data+aug share"], out, "lrllrrr")


def engine_table(rows: list[dict[str, Any]]) -> str:
    out = [[r["backbone"], r["batch"], f"{r['rounds']}×{r['steps_per_round']}",
            fmt(r["engine_images_per_second"]), fmt(r["bare_images_per_second"]),
            f"{r['ratio_median']:.3f}", f"{r['ratio_total']:.3f}",
            f"{r['cpu_ratio_total']:.3f}",
            " ".join(f"{x['ratio']:.2f}" for x in r["rows"])] for r in rows]
    return table(["backbone", "batch", "rounds×steps", "engine img/s", "bare img/s",
                  "wall ratio (median)", "wall ratio (total)", "CPU-time ratio (total)",
                  "per-round wall ratios"], out, "lrlrrrrrl")


def presets_table(rows: list[dict[str, Any]]) -> str:
    variants = [v for v in ("before", "after") if v in rows[0]]
    out = []
    for r in rows:
        cells = [r["recipe"], r["preset"], r["backbone"], str(r["view_size"]), str(r["batch"])]
        for key in ("step_seconds", "augment"):
            for v in variants:
                seconds = r[v][key] if key == "step_seconds" else r[v]["median_seconds"][key]
                cells.append(f"{1000 * seconds:.1f}")
        cells += [pct(r[v]["shares"]["augment"]) for v in variants]
        if len(variants) == 2:
            cells.append(f"{r['before']['step_seconds'] / r['after']['step_seconds']:.2f}×")
        out.append(cells)
    head = ["recipe", "preset", "backbone", "view px", "batch",
            *(f"step ms ({v})" for v in variants), *(f"augment ms ({v})" for v in variants),
            *(f"augment share ({v})" for v in variants)]
    head += ["step speed-up"] if len(variants) == 2 else []
    return table(head, out, "lllrr" + "r" * (len(head) - 5))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few repeats, small E-step")
    p.add_argument("--backbones", nargs="+", default=["small_cnn", "resnet18_cifar"])
    p.add_argument("--small-batch", type=int, default=256)
    p.add_argument("--resnet-batch", type=int,
                   help="default 256, the batch of the data + augmentation target")
    p.add_argument("--repeats", type=int, help="timed steps per config (default 5; quick 2)")
    p.add_argument("--resnet-repeats", type=int,
                   help="timed steps per ResNet config (default: --repeats; quick 1)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--estep-n", type=int, nargs=2, metavar=("SMALL", "RESNET"),
                   help="E-step images (default 70000 2048; quick 5000 128; 0 skips)")
    p.add_argument("--estep-precisions", nargs="+",
                   help="default fp32 and, on a CPU with native bf16, bf16 (quick: fp32)")
    p.add_argument("--rounds", type=int, help="engine-vs-bare rounds (default 10; quick 6)")
    p.add_argument("--round-steps", type=int, help="steps per round (default 2; quick 1)")
    p.add_argument("--engine-backbones", nargs="+",
                   help="engine-vs-bare backbones (default: all; quick: small_cnn)")
    p.add_argument("--cpu-presets", action="store_true",
                   help="part 3 only: the CPU presets, before/after view pipelines")
    p.add_argument("--recipes", nargs="+", default=list(PRESET_RECIPES),
                   help="part 3 recipes (the installed ones of these)")
    p.add_argument("--presets", nargs="+", default=["digits", "mnist"], help="part 3 presets")
    p.add_argument("--before-views", type=Path,
                   help="part 3: an augment module file whose factories build the 'before' views")
    p.add_argument("--threads", type=int, default=THREADS, help="torch intra-op threads")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    q = a.quick
    a.resnet_batch = a.resnet_batch or 256
    a.repeats = a.repeats or (2 if q else 5)
    a.resnet_repeats = a.resnet_repeats or (1 if q else a.repeats)
    a.estep_n = a.estep_n or ([5_000, 128] if q else [70_000, 2048])
    a.estep_precisions = a.estep_precisions or (["fp32"] if q else precisions())
    a.rounds = a.rounds or (6 if q else 10)
    a.round_steps = a.round_steps or (1 if q else 2)
    a.engine_backbones = a.engine_backbones or (["small_cnn"] if q else a.backbones)
    return a


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    setup(args.threads)
    env = environment(script="step_anatomy", quick=args.quick)
    if args.cpu_presets:
        return main_presets(args, env)
    anatomy_rows, engine_rows, datasets, recipes = [], [], {}, {}
    for backbone in args.backbones:
        data, source = dataset_for(backbone)
        datasets[backbone] = source
        small = backbone == "small_cnn"
        batch = args.small_batch if small else args.resnet_batch
        recipes[backbone] = describe_recipe(stage_raw(backbone, batch, "fp32", False))
        configs = [(p, cl) for cl in ([False] if small else [False, True]) for p in precisions()]
        n = args.estep_n[0 if small else 1]
        repeats = args.repeats if small else args.resnet_repeats
        for row in anatomy(backbone, data, batch, configs, repeats, args.warmup, n,
                           args.estep_precisions):
            anatomy_rows.append(row)
            print(f"{backbone} b{batch} {row['precision']} CL={row['channels_last']}: "
                  f"{row['step_images_per_second']:.1f} img/s, data+aug "
                  f"{pct(row['data_aug_share'])}", flush=True)
        if backbone in args.engine_backbones:
            row = engine_vs_bare(backbone, data, batch, args.rounds, args.round_steps)
            engine_rows.append(row)
            print(f"{backbone} engine/bare = {row['ratio_median']:.3f} (median), "
                  f"{row['ratio_total']:.3f} (total)", flush=True)
    finish(env)
    payload = {"environment": env, "datasets": datasets, "recipes": recipes,
               "settings": {k: v for k, v in vars(args).items() if k != "out"},
               "anatomy": anatomy_rows, "engine_vs_bare": engine_rows}
    path = write_json("step_anatomy", payload, args.out)
    print(f"\n## Step anatomy ({load_line(env)})\n")
    print(summary_table(anatomy_rows) + "\n")
    print(anatomy_table(anatomy_rows) + "\n")
    if engine_rows:
        print(engine_table(engine_rows) + "\n")
    print(f"wrote {path}")
    return payload


def main_presets(args: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    payload = cpu_presets(args, env)
    path = write_json("step_anatomy_presets", payload, args.out)
    print(f"\n## CPU preset anatomy ({load_line(env)})\n")
    print(presets_table(payload["presets"]) + "\n")
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
