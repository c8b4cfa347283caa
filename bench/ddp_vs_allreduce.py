"""The trainer's gradient all-reduce against DDP wrapping of the parts (issue #32 item 2): step
time of a digits preset on 2 gloo processes (CPU), approach by approach, interleaved.

Approaches, each on its own trainer composed from the same seed in the same 2 processes:

- ``allreduce``: what the trainer does, ``corekit.distributed.average_gradients`` after
  backward (every trainable gradient in buckets of 25 MB, one all-reduce per bucket).
- ``ddp_static``: every part (encoder, head) with a trainable parameter wrapped in
  ``DistributedDataParallel(static_graph=True)``; the trainer's all-reduce skipped.
- ``ddp_unused``: the same with ``find_unused_parameters=True``.

DDP runs with ``broadcast_buffers=False``: the trainer broadcasts rank 0's BatchNorm buffers
after each step in every approach. The wrapper replaces each part's ``forward`` (instance
attribute) so that ``Network.compute`` calls it unchanged and ``model.online`` keeps its
state-dict keys (no ``module.`` prefix); a part run on two views (and a shared head) goes
through its DDP wrapper once per call.

Each repeat times ``--steps`` steps of every approach, in an order rotated from repeat to
repeat, between barriers (the mean step time of the block on rank 0). Before timing, one step
of every approach on the same fixed views from the same weights checks that DDP leaves the
same parameters as the all-reduce (largest absolute difference).

    taskset -c 0,1 python bench/ddp_vs_allreduce.py --recipes cc propos --repeats 9

Prints a markdown table and writes JSON (default ``bench/results/ddp_vs_allreduce.json``).
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Literal  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from common import environment, finish, fmt, load_line, loadavg, setup, table, write_json  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from corekit import distributed  # noqa: E402
from corekit.data import load_dataset  # noqa: E402
from corekit.engine.seed import seed_everything  # noqa: E402
from corekit.engine.trainer import StageTrainer  # noqa: E402
from corekit.network import Network  # noqa: E402
from corekit.plugins import load_plugins  # noqa: E402
from corekit.testing import compose_trainer, run_on_ranks  # noqa: E402

Approach = Literal["allreduce", "ddp_static", "ddp_unused"]
APPROACHES: tuple[Approach, ...] = ("allreduce", "ddp_static", "ddp_unused")
DDP_OPTIONS: dict[Approach, dict[str, bool]] = {
    "ddp_static": {"static_graph": True},
    "ddp_unused": {"find_unused_parameters": True},
}
WORLD = 2


class _ClassForward(nn.Module):
    """``part``'s own (class) forward, for DDP to wrap while ``part.forward`` calls DDP."""

    def __init__(self, part: nn.Module) -> None:
        super().__init__()
        self.part = part

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return type(self.part).forward(self.part, *inputs)


def wrap_parts(network: Network, options: dict[str, bool]) -> list[str]:
    """Route every part of ``network`` with a trainable parameter through its own
    ``DistributedDataParallel``; the names of the wrapped parts."""
    wrapped = []
    for name in network.owned():
        part = network.part(name)
        if name in network.frozen or not any(p.requires_grad for p in part.parameters()):
            continue
        ddp = DistributedDataParallel(_ClassForward(part), broadcast_buffers=False, **options)
        object.__setattr__(part, "forward", ddp.__call__)
        wrapped.append(name)
    return wrapped


@contextmanager
def approach_of(kind: Approach) -> Iterator[None]:
    """Within the block, the trainer's gradient all-reduce runs only for ``allreduce`` (DDP
    has averaged the gradients in backward)."""
    average = distributed.average_gradients
    if kind != "allreduce":
        distributed.average_gradients = lambda *_, **__: None
    try:
        yield
    finally:
        distributed.average_gradients = average


def _trainer(recipe: str, kind: Approach, run_dir: Path, batch_size: int | None
             ) -> tuple[StageTrainer, list[str]]:
    """``recipe``'s digits trainer composed from seed 42 (pseudo-labels ``i mod K`` where the
    stage reads them), its parts wrapped for ``kind``; the wrapped parts' names."""
    seed_everything(42)
    extra = [f"train.batch_size={batch_size}"] if batch_size else []
    trainer = compose_trainer(load_plugins(), recipe, run_dir, 'train.device="cpu"', *extra,
                              dataset=load_dataset("digits"))
    c = trainer.composed
    if c.pseudo is not None:
        c.pseudo.write(torch.arange(len(c.train_set)) % c.n_clusters,
                       torch.zeros(c.n_clusters, 1))
    for network in (c.model.online, *(b.network for b in c.model.branches.values())):
        network.train()
    wrapped = wrap_parts(c.model.online, DDP_OPTIONS[kind]) if kind in DDP_OPTIONS else []
    return trainer, wrapped


def _fixed_step(trainer: StageTrainer, kind: Approach) -> dict[str, torch.Tensor]:
    """The online parameters after one step at the last epoch on fixed random views (seed 7,
    each rank its own half of the global batch)."""
    c = trainer.composed
    g = torch.Generator().manual_seed(7)
    size, share = c.stage.augment.size, trainer.batch_size // WORLD
    rows = slice(distributed.rank() * share, (distributed.rank() + 1) * share)
    full = {name: torch.rand(trainer.batch_size, c.train_set.channels, size, size, generator=g)
            for name in c.views}
    plain = trainer.views
    trainer.views = lambda images, names=None: {k: v[rows] for k, v in full.items()}
    indices = torch.arange(trainer.batch_size)[rows]
    with approach_of(kind):
        trainer.train_step(indices, c.train_set.batch(indices), trainer.epochs - 1,
                           torch.Generator().manual_seed(0))
    trainer.views = plain
    return {k: v.detach().clone() for k, v in c.model.online.state_dict().items()}


def _block(trainer: StageTrainer, kind: Approach, batches: list[dict[str, Any]],
           epoch: int) -> float:
    """Seconds per step of ``batches`` trained by ``trainer``, between barriers."""
    generator = torch.Generator().manual_seed(3)
    dist.barrier()
    start = time.perf_counter()
    with approach_of(kind):
        for batch in batches:
            trainer.train_batch(batch, epoch, generator)
    dist.barrier()
    return (time.perf_counter() - start) / len(batches)


def _on_rank(rank: int, world: int, recipe: str, repeats: int, steps: int,
             batch_size: int | None) -> dict[str, Any]:
    """Every measurement of ``recipe`` on this rank."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="ddp-vs-allreduce-") as tmp:
        check = {kind: _fixed_step(_trainer(recipe, kind, Path(tmp) / f"check-{kind}",
                                            batch_size)[0], kind)
                 for kind in APPROACHES}
        difference = {kind: max(float((check[kind][k] - v).abs().max())
                                for k, v in check["allreduce"].items())
                      for kind in APPROACHES if kind != "allreduce"}
        built = {kind: _trainer(recipe, kind, Path(tmp) / kind, batch_size)
                 for kind in APPROACHES}
        trainers = {kind: pair[0] for kind, pair in built.items()}
        first = trainers["allreduce"]
        epoch = first.epochs - 1
        distributed.seed_rank(42)
        batches = list(first.epoch_batches(torch.Generator().manual_seed(1), steps))
        for kind, trainer in trainers.items():  # warm-up (DDP's static graph records here)
            _block(trainer, kind, batches[:2], epoch)
        times: dict[str, list[float]] = {kind: [] for kind in APPROACHES}
        loads = [loadavg()]
        for repeat in range(repeats):
            order = APPROACHES[repeat % 3:] + APPROACHES[:repeat % 3]
            for kind in order:
                times[kind].append(_block(trainers[kind], kind, batches, epoch))
            loads.append(loadavg())
    return {"rank": rank, "times": times, "max_param_difference": difference,
            "wrapped": built["ddp_static"][1], "local_batch": first.batch_size // world,
            "global_batch": first.batch_size, "loadavg": loads}


def summary(recipe: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per approach: median step time and its spread (min, max), and the paired ratio to the
    all-reduce (each repeat's block over the all-reduce block of the same repeat, which ran
    next to it under the same load): median, min and max."""
    base = result["times"]["allreduce"]
    rows = []
    for kind in APPROACHES:
        times = result["times"][kind]
        ratios = [t / b for t, b in zip(times, base, strict=True)]
        rows.append({"recipe": recipe, "approach": kind,
                     "median_ms": 1e3 * statistics.median(times),
                     "min_ms": 1e3 * min(times), "max_ms": 1e3 * max(times),
                     "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                     "ratio_max": max(ratios),
                     "max_param_difference": result["max_param_difference"].get(kind, 0.0)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["cc", "propos"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--batch-size", type=int, help="the global batch (default the preset's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    setup(1)
    env = environment(recipes=args.recipes, repeats=args.repeats, steps=args.steps,
                      processes=WORLD, backend="gloo", threads_per_process=1,
                      affinity=sorted(os.sched_getaffinity(0)))
    results = {recipe: run_on_ranks(_on_rank, WORLD, recipe, args.repeats, args.steps,
                                    args.batch_size)[0]
               for recipe in args.recipes}
    rows = [row for recipe, result in results.items() for row in summary(recipe, result)]
    path = write_json("ddp_vs_allreduce", {"environment": finish(env), "results": results,
                                           "summary": rows}, args.out)
    print(f"digits presets, 2 gloo processes x 1 thread on CPUs {env['affinity']}; "
          f"{load_line(env)}\n")
    print(table(["recipe", "approach", "step ms (median)", "min–max ms",
                 "÷ all-reduce, paired (median)", "min–max", "max |Δparam| vs all-reduce"],
                [[r["recipe"], r["approach"], fmt(r["median_ms"]),
                  f"{fmt(r['min_ms'])}–{fmt(r['max_ms'])}", f"{r['ratio_median']:.2f}",
                  f"{r['ratio_min']:.2f}–{r['ratio_max']:.2f}",
                  f"{r['max_param_difference']:.1e}"] for r in rows], "llrrrrr"))
    for recipe, result in results.items():
        print(f"{recipe}: global batch {result['global_batch']} ({result['local_batch']} per "
              f"process), DDP-wrapped parts {result['wrapped']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
