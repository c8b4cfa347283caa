"""Helpers for testing plugins in isolation (import from your plugin's tests).

``plugin_set(module)`` loads the core plus just your plugin module (no other installed
plugin), so a test sees exactly what your plugin registers. ``tiny_recipe`` gives a recipe
dict that trains in a second on a slice of ``digits``; ``run_tiny`` trains it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from corekit import recipe as rc
from corekit.plugins import Plugins, load_plugins


def plugin_set(*modules: ModuleType, name: str = "under_test") -> Plugins:
    """The core's components plus ``modules``, with every installed plugin switched off."""
    names = [name if len(modules) == 1 else f"{name}{i}" for i in range(len(modules))]
    saved = os.environ.get("DEEPCLUST_PLUGINS")
    os.environ["DEEPCLUST_PLUGINS"] = ",".join(names)
    try:
        return load_plugins(extra=list(zip(names, modules, strict=True)))
    finally:
        if saved is None:
            os.environ.pop("DEEPCLUST_PLUGINS")
        else:
            os.environ["DEEPCLUST_PLUGINS"] = saved


def tiny_recipe(**sections: Any) -> dict[str, Any]:
    """A one-epoch, three-step recipe on 256 digits; ``sections`` are merged over it."""
    base = {
        "name": "tiny",
        "data": {"name": "digits", "subset": 256},
        "model": {"backbone": {"type": "mlp", "hidden": 64, "out_dim": 32},
                  "heads": {"proj": {"type": "mlp_projector", "hidden": 32, "out_dim": 16}}},
        "augment": {"type": "simclr", "views": 2, "crop_scale": [0.5, 1.0]},
        "losses": {"instance": {"type": "nt_xent", "head": "proj"}},
        "clusterer": {"type": "kmeans", "every": 0, "before_training": False, "n_init": 1},
        "train": {"epochs": 1, "batch_size": 64, "steps_per_epoch": 3},
    }
    return rc.merge(base, sections)


def run_tiny(raw: dict[str, Any], out: Path, plugins: Plugins, **kwargs: Any) -> dict[str, Any]:
    """Validate ``raw`` and train it into ``out`` quietly; returns final metrics."""
    from corekit.run import train

    return train(rc.validate(raw), out, plugins, log=lambda _: None, progress=False, **kwargs)


def _free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(rank: int, fn: Any, world_size: int, port: int, out_dir: str,
               args: tuple[Any, ...]) -> None:
    """One spawned rank of :func:`run_on_ranks`: join the gloo group, run ``fn``, save its
    return value to ``out_dir/<rank>.pt``, leave the group.

    Before leaving, a garbage collection frees the autograd nodes of ``gather`` (reference
    cycles that hold the process group): left to interpreter exit, freeing the group there
    aborted the process ("terminate called without an active exception") in about a third
    of the runs that back-propagated through ``gather``; none in 60 runs with the collection.
    """
    import gc
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=60))
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, os.path.join(out_dir, f"{rank}.pt"))
        del result
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_on_ranks(fn: Any, world_size: int = 2, *args: Any) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` CPU processes joined in one gloo
    process group (``torch.distributed`` initialised, as under torchrun) and return the ranks'
    return values in rank order.

    ``fn`` must be picklable (a module-level function of an importable module, e.g. a test
    module) and so must ``args`` and the return values (tensors included; they come back
    through ``torch.save``). A rank that raises fails the whole call with its traceback.
    Each call spawns fresh interpreters (about a second or two each), so batch a test's
    checks into one ``fn``.
    """
    import tempfile

    import torch
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    with tempfile.TemporaryDirectory(prefix="deepclust-ranks-") as out_dir:
        mp.spawn(_rank_main, args=(fn, world_size, _free_port(), out_dir, tuple(args)),
                 nprocs=world_size, join=True)
        return [torch.load(os.path.join(out_dir, f"{rank}.pt"), weights_only=False)
                for rank in range(world_size)]


PROBE_OVERRIDES = ("data.subset=256", "train.batch_size=64", "train.steps_per_epoch=3",
                   'train.device="cpu"')
"""The settings :func:`loss_probe` applies over a recipe's ``digits`` preset."""


def loss_probe(plugins: Plugins, recipe_name: str) -> dict[str, Any]:
    """The loss values of recipe ``recipe_name`` (its ``digits`` preset with
    :data:`PROBE_OVERRIDES`, one stage, CPU, float32, one thread), for regression tests.

    Returns ``{"fixed_views": {loss: value}, "train_steps": [{"loss": total, loss: value},
    ...]}``:

    - ``fixed_views``: every loss term, unweighted, on two (``augment.views``) fixed random
      views (``torch.rand`` with generator seed 7) of images 0-31, pseudo-labels ``i mod K``,
      global step 1, the step at the last epoch (every loss active) and the lifecycle at epoch
      0 (so epoch-gated noise is off and the values are deterministic);
    - ``train_steps``: three real M-steps (``StageTrainer.train_step``) of a fresh composition
      after its E-step (if any), at epochs 0, 0 and 6, on the first three batches of the
      epoch-0 order ``randperm(N)`` drawn from the trainer's epoch generator.

    Each part composes the stage afresh after ``seed_everything(train.seed)``, so the values
    depend only on the code and the recipe.
    """
    import tempfile

    import torch

    from corekit.composer import compose
    from corekit.engine.trainer import StageTrainer, steps_per_epoch
    from corekit.run import DataCache, seed_everything

    cpu = torch.device("cpu")
    stage = rc.resolve(recipe_name, plugins.find_recipe, "digits",
                       list(PROBE_OVERRIDES)).stages[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="deepclust-probe-") as run_dir:

            def build() -> StageTrainer:
                seed_everything(stage.train.seed)
                cache = DataCache(cpu)

                def datasets(name: str):
                    return cache(name, stage.data.subset, stage.train.seed)

                train_set = datasets(stage.data.name)
                steps = steps_per_epoch(len(train_set), stage.train.batch_size,
                                        stage.train.drop_last, stage.train.steps_per_epoch)
                composed = compose(plugins, stage, datasets, cpu, None, steps)
                trainer = StageTrainer(composed, Path(run_dir), cpu, None, 0, lambda _: None,
                                       progress=False)
                composed.model.online.train()
                for branch in composed.model.branches.values():
                    branch.network.train()
                return trainer

            trainer = build()
            c = trainer.c
            generator = torch.Generator().manual_seed(7)
            size = stage.augment.size or c.train_set.size
            size = size if isinstance(size, int) else max(size)
            views = [torch.rand(32, c.train_set.channels, size, size, generator=generator)
                     for _ in range(stage.augment.views)]
            if c.pseudo is not None:
                c.pseudo.write(torch.arange(len(c.train_set)) % c.n_clusters,
                               torch.zeros(c.n_clusters, 4))
            trainer.global_step = 1
            step = trainer.make_step(torch.arange(32), views, stage.train.epochs - 1)
            trainer.hooks.fire("on_epoch_start", trainer.context(0))
            fixed = {k: float(v.detach()) for k, v in trainer.loss_terms(step).items()}

            trainer = build()
            c = trainer.c
            if c.pseudo is not None:
                trainer.e_step(0)
            generator = torch.Generator().manual_seed(stage.train.seed * 100_003)
            order = torch.randperm(len(c.train_set), generator=generator)
            batch = trainer.batch_size
            steps_out = []
            for k, epoch in enumerate((0, 0, 6)):
                trainer.hooks.fire("on_epoch_start", trainer.context(epoch))
                indices = order[k * batch:(k + 1) * batch]
                out = trainer.train_step(indices, c.train_set.batch(indices), epoch, generator)
                steps_out.append({key: float(v) for key, v in out.items() if key != "lr"})
    finally:
        torch.set_num_threads(threads)
    return {"fixed_views": fixed, "train_steps": steps_out}
