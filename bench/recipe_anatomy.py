"""Step anatomy of every installed paper recipe, at its CPU preset and at paper size.

For each recipe (``cc``, ``propos``, ``hadis`` where installed) and size, the stage is resolved
with ``corekit.recipe.resolve`` and composed with ``corekit.composer.compose``, and
``StageTrainer.train_step`` runs it with the engine's own phase timer (``train.time_phases``:
``corekit.engine.phases``), so the split is the one a user gets in ``metrics.jsonl``:

    data        ImageSet.batch(indices): uint8 gather -> float32 in [0, 1]
    augment     the recipe's view pipelines (kornia, on the CPU)
    forward     every loss with the model parts it reads (online and target branches)
    backward    zero_grad + backward
    optimizer   optimizer step (and gradient clipping where the recipe has it)
    after_step  state updated after the step: EMA target, memory bank
    estep       the recipe's E-step over the whole set (features + its clusterer), timed once
                before the steps (it also fills the pseudo-labels the losses read); its
                amortised cost per step, if run every epoch, is ``seconds · batch / N``
                (derived, not timed)

Sizes: ``cpu`` = the recipe's ``mnist`` preset on all 70,000 MNIST images (noise if they are
missing); ``paper`` = the recipe's top level (its CIFAR-10 settings: backbone, view size, heads,
losses, optimizer) on ``--paper-n`` uniform-noise 3×32×32 images, at ``--paper-batch`` (256 in
the papers; the quick default is 32, since a ResNet step at batch 256 takes tens of seconds on a
2-core CPU). fp32, one warm-up step, then ``--steps`` timed steps.

    python bench/recipe_anatomy.py --quick
    python bench/recipe_anatomy.py --paper-batch 256 --steps 3

Prints a markdown table and writes JSON (default ``bench/results/recipe_anatomy.json``).
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    environment,
    finish,
    fmt,
    load_line,
    mnist_or_noise,
    noise_set,
    pct,
    setup,
    table,
    write_json,
)

from corekit import recipe as rc  # noqa: E402
from corekit.composer import compose  # noqa: E402
from corekit.data import ImageSet  # noqa: E402
from corekit.engine.phases import PHASES  # noqa: E402
from corekit.engine.trainer import StageTrainer  # noqa: E402
from corekit.plugins import get_plugins  # noqa: E402

setup()

CPU = torch.device("cpu")
RECIPES = ("cc", "propos", "hadis")
STEP_PHASES = tuple(p for p in PHASES if p != "estep")


def installed(plugins: Any) -> list[str]:
    names = plugins.registry.names("recipe")
    return [name for name in RECIPES if name in names]


def stage_for(recipe: str, size: str, batch: int | None) -> Any:
    """The recipe's stage at ``size`` (``cpu``: its mnist preset; ``paper``: its top level)."""
    overrides = ['train.device="cpu"', 'train.precision="fp32"', "train.epochs=1",
                 "train.time_phases=true", "train.checkpoint_every=0"]
    if batch:
        overrides.append(f"train.batch_size={batch}")
    resolved = rc.resolve(recipe, get_plugins().find_recipe,
                          "mnist" if size == "cpu" else None, overrides)
    return resolved.stages[0]


def anatomy(recipe: str, size: str, data: ImageSet, source: str, args: argparse.Namespace
            ) -> dict[str, Any]:
    torch.manual_seed(0)
    stage = stage_for(recipe, size, args.paper_batch if size == "paper" else None)
    batch = stage.train.batch_size
    composed = compose(get_plugins(), stage, lambda _name: data, CPU, None, 1)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = StageTrainer(composed, Path(tmp), CPU, None, 0, lambda _s: None, False)
        composed.model.online.train()
        if stage.clusterer is not None:
            trainer.e_step(0)
        estep_seconds = trainer.phases.take().get("time_estep")
        generator = torch.Generator().manual_seed(1)
        order = torch.randperm(len(data), generator=generator)
        for step in range(1 + args.steps):
            if step == 1:
                trainer.phases.take()
                start = time.perf_counter()
            indices = order[step * batch:(step + 1) * batch]
            with trainer.phases("data"):
                images = data.batch(indices)
            trainer.train_step(indices, images, 0, generator)
        wall = (time.perf_counter() - start) / args.steps
    seconds = {name[5:]: value / args.steps for name, value in trainer.phases.take().items()}
    step_total = sum(seconds.get(p, 0.0) for p in STEP_PHASES)
    row = {"recipe": recipe, "size": size, "data": source, "batch": batch,
           "views": len(composed.views), "backbone": stage.model.backbone.type,
           "view_size": stage.augment.size, "phase_seconds": seconds,
           "step_seconds": step_total, "wall_seconds": wall,
           "images_per_second": batch / step_total,
           "shares": {p: seconds.get(p, 0.0) / step_total for p in STEP_PHASES}}
    if estep_seconds is not None:
        n = len(data)
        row["estep"] = {"n": n, "seconds": estep_seconds,
                        "amortised_per_step": estep_seconds * batch / n,
                        "amortised_share": estep_seconds * batch / n / step_total}
    return row


def anatomy_table(rows: list[dict[str, Any]]) -> str:
    head = ["recipe", "size", "backbone", "view px", "batch", "step ms", "img/s",
            *STEP_PHASES, "E-step (amortised)"]
    body = []
    for r in rows:
        estep = r.get("estep")
        amortised = (f"{pct(estep['amortised_share'])} ({fmt(estep['seconds'])} s / "
                     f"{estep['n']:,} img)" if estep else "— (no clusterer)")
        body.append([r["recipe"], r["size"], r["backbone"], str(r["view_size"]),
                     str(r["batch"]), f"{1000 * r['step_seconds']:.0f}",
                     fmt(r["images_per_second"]), *(pct(r["shares"][p]) for p in STEP_PHASES),
                     amortised])
    return table(head, body, "lllrrrr" + "r" * len(STEP_PHASES) + "r")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="paper size at batch 32, 2 steps")
    p.add_argument("--recipes", nargs="+", help=f"default: the installed ones of {RECIPES}")
    p.add_argument("--sizes", nargs="+", default=["cpu", "paper"])
    p.add_argument("--paper-batch", type=int, help="default 256 (quick 32)")
    p.add_argument("--steps", type=int, help="timed steps (default 3; quick 2)")
    p.add_argument("--paper-n", type=int, help="paper-size images (default 4096; quick 512)")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    a.paper_batch = a.paper_batch or (32 if a.quick else 256)
    a.steps = a.steps or (2 if a.quick else 3)
    a.paper_n = a.paper_n or (512 if a.quick else 4096)
    return a


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    env = environment(script="recipe_anatomy", quick=args.quick)
    recipes = args.recipes or installed(get_plugins())
    mnist, mnist_source = mnist_or_noise() if "cpu" in args.sizes else (None, "")
    cifar = noise_set(args.paper_n, 3, 32) if "paper" in args.sizes else None
    rows = []
    for recipe in recipes:
        for size in args.sizes:
            data, source = ((mnist, mnist_source) if size == "cpu"
                            else (cifar, "uniform noise 3×32×32 (CIFAR-sized)"))
            row = anatomy(recipe, size, data, source, args)
            rows.append(row)
            print(f"{recipe} {size}: {fmt(row['images_per_second'])} img/s, data+aug "
                  f"{pct(row['shares']['data'] + row['shares']['augment'])}", flush=True)
    finish(env)
    payload = {"environment": env, "settings": {k: v for k, v in vars(args).items()
                                                if k != "out"}, "rows": rows}
    path = write_json("recipe_anatomy", payload, args.out)
    print(f"\n## Recipe anatomy ({load_line(env)})\n")
    print(anatomy_table(rows) + "\n")
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
