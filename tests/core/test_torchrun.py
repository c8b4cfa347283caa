"""Issue #32 under torch.distributed: 2 gloo processes on CPU train as one process on the
global batch (the gradient all-reduce, the epoch shard, the memory bank's gather, the EMA in
step), only rank 0 writes the run folder, and ``torchrun -m corekit.cli train`` runs end to end.

The 1-process references run in the test's own process; the ranks through
``corekit.testing.run_on_ranks``. BatchNorm layers are put in eval mode on both sides: in
training mode each rank normalises by its own half batch (no SyncBatchNorm on CPU), which is
not the global batch's statistics.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from corekit import distributed
from corekit.data import load_dataset
from corekit.engine.seed import seed_everything
from corekit.engine.trainer import StageTrainer
from corekit.errors import UserError
from corekit.state.memory_bank import MemoryBank
from corekit.testing import compose_trainer, load_only, rank_slice, run_on_ranks

WORLD = 2
B = 16  # the global batch
STEP_RECIPES = ("cc", "propos")  # the presets whose one full train_step is compared
OVERRIDES = (f"train.batch_size={B}", 'train.device="cpu"')


def _trainer(recipe: str, run_dir: Path, *extra: str) -> StageTrainer:
    """The ``recipe`` digits preset's trainer, composed from its seed, BatchNorm in eval mode,
    pseudo-labels ``i mod K`` where the stage reads them."""
    seed_everything(42)
    trainer = compose_trainer(load_only(recipe), recipe, run_dir, *OVERRIDES, *extra,
                              dataset=load_dataset("digits"))
    c = trainer.composed
    for network in (c.model.online, *(b.network for b in c.model.branches.values())):
        network.train()
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    if c.pseudo is not None:
        c.pseudo.write(torch.arange(len(c.train_set)) % c.n_clusters,
                       torch.zeros(c.n_clusters, 1))
    return trainer


def _fixed_views(trainer: StageTrainer, rows: slice) -> None:
    """Make ``trainer`` see the same views of the global batch in every process (its rows
    ``rows``): random tensors from generator seed 7, as ``corekit.testing.loss_probe`` fixes
    them, instead of drawn augmentations."""
    c = trainer.composed
    g = torch.Generator().manual_seed(7)
    size = c.stage.augment.size
    full = {name: torch.rand(B, c.train_set.channels, size, size, generator=g)
            for name in c.views}
    trainer.views = lambda images, names=None: {k: v[rows] for k, v in full.items()}


def _one_step(trainer: StageTrainer, rows: slice) -> dict[str, dict[str, torch.Tensor]]:
    """One full ``train_step`` of the global batch's rows ``rows`` at the last epoch (every
    loss active; the lifecycle left at epoch 0, so epoch-gated noise is off, as in
    ``corekit.testing.loss_probe``); the parameters (and buffers) of every network after it,
    by branch."""
    _fixed_views(trainer, rows)
    indices = torch.arange(B)[rows]
    trainer.train_step(indices, trainer.composed.train_set.batch(indices), trainer.epochs - 1,
                       torch.Generator().manual_seed(0))
    model = trainer.composed.model
    networks = {"online": model.online, **{n: b.network for n, b in model.branches.items()}}
    return {name: {k: v.detach().clone() for k, v in network.state_dict().items()}
            for name, network in networks.items()}


def _bank_update(indices: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """A memory bank of 32 rows after one momentum update from a step on ``indices``."""
    bank = MemoryBank(None, 32, dim=4, generator=torch.Generator().manual_seed(3))
    step = SimpleNamespace(indices=indices, output=lambda *_: features)
    bank.after_optimizer_step(step)
    return bank.features.clone()


def _bank_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.randperm(32, generator=g)[:8], torch.randn(8, 4, generator=g)


class _BatchCentred:
    """A stand-in online clusterer whose labels depend on the whole batch it is given."""

    def update(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats - feats.mean(0)).argmax(1)


def _per_batch_estep(indices: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The pseudo-labels of 32 images after ``StageTrainer``'s per-batch E-step on a step of
    ``indices`` with ``features``."""
    spec = SimpleNamespace(features="online:proj", normalize=False)
    composed = SimpleNamespace(stage=SimpleNamespace(clusterer=spec),
                               clusterer=_BatchCentred(),
                               pseudo=SimpleNamespace(labels=torch.full((32,), -1)))
    step = SimpleNamespace(indices=indices, output=lambda *_: features)
    StageTrainer._update_assignments(SimpleNamespace(composed=composed), step)
    return composed.pseudo.labels


def _sync_bn(run_dir: Path) -> dict:
    """``train.sync_bn = true``: the message of the cc trainer composed with it on the CPU, and
    what ``distributed.sync_batch_norm`` makes of a BatchNorm network when the device is
    CUDA (only the conversion runs here: SyncBatchNorm's forward needs a GPU)."""
    try:
        _trainer("cc", run_dir, "train.sync_bn=true")
        refused = None
    except UserError as exc:
        refused = str(exc)
    network = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Sequential(nn.BatchNorm1d(4)))
    keys, params = list(network.state_dict()), list(network.parameters())
    layers = distributed.sync_batch_norm([network], torch.device("cuda"))
    return {"refused": refused, "layers": layers, "keys_kept": list(network.state_dict()) == keys,
            "params_kept": all(a is b for a, b in zip(network.parameters(), params, strict=True)),
            "synced": [type(m).__name__ for m in network.modules()
                       if isinstance(m, nn.modules.batchnorm._BatchNorm)]}


def _on_rank(r: int, world: int, tmp: str) -> dict:
    """Everything the 2-rank tests check, in one spawn."""
    rows = rank_slice(B, r, world)
    out: dict = {"main": distributed.is_main()}

    out["steps"] = {recipe: _one_step(_trainer(recipe, Path(tmp) / f"{recipe}-step-{r}"), rows)
                    for recipe in STEP_RECIPES}
    trainer = _trainer("cc", Path(tmp) / f"cc-{r}")

    images = trainer.composed.train_set.batch(torch.arange(8))
    draws = []
    for _ in range(2):  # the same images, seeded as run_stage seeds after composing
        distributed.seed_rank(42)
        draws.append(StageTrainer.views(trainer, images))
    out["views"] = draws
    out["sync_bn"] = _sync_bn(Path(tmp) / f"sync-bn-{r}")
    batches = list(trainer.epoch_batches(torch.Generator().manual_seed(1), 2))
    out["epoch_indices"] = [b["main"].indices for b in batches]

    indices, features = _bank_inputs()
    share = rank_slice(len(indices), r, world)
    out["bank"] = _bank_update(indices[share], features[share])
    out["pseudo"] = _per_batch_estep(indices[share], features[share])

    seed_everything(42)
    propos = compose_trainer(load_only("propos"), "propos", Path(tmp) / f"propos-{r}",
                             *OVERRIDES, dataset=load_dataset("digits"))
    c = propos.composed
    if c.pseudo is not None:
        c.pseudo.write(torch.arange(len(c.train_set)) % c.n_clusters,
                       torch.zeros(c.n_clusters, 1))
    distributed.seed_rank(42)
    generator = torch.Generator().manual_seed(2)
    for batch in propos.epoch_batches(generator, 3):
        propos.train_batch(batch, 0, generator)
    out["ema"] = {name: {k: v.clone() for k, v in branch.network.state_dict().items()}
                  for name, branch in c.model.branches.items()}
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    torch.set_num_threads(1)
    return run_on_ranks(_on_rank, WORLD, str(tmp_path_factory.mktemp("ranks")))


@pytest.mark.parametrize("recipe", STEP_RECIPES)
def test_train_step_on_two_ranks_equals_one_process_on_the_global_batch(
        ranks: list[dict], tmp_path: Path, recipe: str) -> None:
    """2 ranks × B/2 against 1 × B: one full ``StageTrainer.train_step`` of the ``recipe``
    digits preset (its losses gather; the gradients are averaged before the optimizer's step;
    propos's target follows by EMA) leaves the same parameters, and the same on both ranks."""
    one = _one_step(_trainer(recipe, tmp_path / "one"), slice(None))
    before = _trainer(recipe, tmp_path / "before").composed.model.online.state_dict()
    moved = [k for k in one["online"] if not torch.equal(one["online"][k], before[k])]
    assert moved, "the step changed no parameter"
    for r in ranks:
        for name, state in one.items():
            for key, value in state.items():
                torch.testing.assert_close(r["steps"][recipe][name][key], value, rtol=1e-5,
                                           atol=1e-6, msg=lambda m, k=f"{name}.{key}": f"{k}: {m}")


def test_the_epoch_is_sharded_so_the_ranks_batches_are_the_one_process_batch(
        ranks: list[dict], tmp_path: Path) -> None:
    trainer = _trainer("cc", tmp_path)
    one = [b["main"].indices for b in trainer.epoch_batches(torch.Generator().manual_seed(1), 2)]
    for step, indices in enumerate(one):
        assert len(ranks[0]["epoch_indices"][step]) == B // WORLD
        together = torch.cat([r["epoch_indices"][step] for r in ranks])
        assert torch.equal(together, indices)


def test_each_rank_draws_its_own_augmentations_reproducibly(ranks: list[dict]) -> None:
    """The same images: other views on the other rank, the same views when seeded again."""
    a, b = ranks[0]["views"][0], ranks[1]["views"][0]
    assert not any(torch.equal(a[k], b[k]) for k in a)
    for r in ranks:
        first, again = r["views"]
        assert all(torch.equal(first[k], again[k]) for k in first)


def test_memory_bank_updates_gather_every_ranks_rows(ranks: list[dict]) -> None:
    one = _bank_update(*_bank_inputs())
    for r in ranks:
        torch.testing.assert_close(r["bank"], one, rtol=0, atol=1e-7)


def test_per_batch_estep_gathers_the_global_batch(ranks: list[dict]) -> None:
    one = _per_batch_estep(*_bank_inputs())
    assert (one >= 0).sum() == 8
    for r in ranks:
        assert torch.equal(r["pseudo"], one)


def test_ema_and_weights_stay_identical_on_both_ranks(ranks: list[dict]) -> None:
    """propos (a momentum target) after 3 steps on different augmentations per rank."""
    assert "target" in ranks[0]["ema"]
    for name, state in ranks[0]["ema"].items():
        for key, value in state.items():
            assert torch.equal(value, ranks[1]["ema"][name][key]), f"{name}.{key}"


def test_sync_bn_converts_batch_norm_under_torchrun_and_is_refused_on_the_cpu(
        ranks: list[dict]) -> None:
    for r in ranks:
        assert "train.sync_bn = true needs CUDA" in r["sync_bn"]["refused"]
        assert r["sync_bn"]["layers"] == 2
        assert r["sync_bn"]["synced"] == ["SyncBatchNorm", "SyncBatchNorm"]
        assert r["sync_bn"]["keys_kept"] and r["sync_bn"]["params_kept"]


def test_sync_bn_is_a_no_op_on_one_process(tmp_path: Path) -> None:
    """One process: the batch is the global batch, so the recipe trains as without it."""
    trainer = _trainer("cc", tmp_path, "train.sync_bn=true")
    assert trainer.composed.stage.train.sync_bn
    assert not any(isinstance(m, nn.SyncBatchNorm) for n in trainer.networks()
                   for m in n.modules())
    assert distributed.sync_batch_norm(trainer.networks(), torch.device("cuda")) == 0


def test_only_rank_0_is_main(ranks: list[dict]) -> None:
    assert [r["main"] for r in ranks] == [True, False]


def test_one_process_is_not_distributed() -> None:
    assert not distributed.is_distributed() and distributed.is_main()
    order = torch.arange(10)
    assert distributed.shard(order, 4) == (order, 4)


def _refits_on_rank(rank: int, world: int) -> tuple[int, list[tuple[int, int]], int]:
    """Two epochs of a 100-s budget planned for 50 epochs; rank 1's clock says each took 10x
    as long as rank 0's, so on its own it would fit far fewer epochs."""
    from corekit.budget import Pacer, agreed_refit

    pacer = Pacer.after(100.0, 110.0, planned=50, most=50)
    for done in (1, 2):
        agreed_refit(pacer, done, 1.0 * (10 if rank == 1 else 1))
    return pacer.epochs, [(r.epoch, r.epochs) for r in pacer.refits], pacer.warp.at(40.0)


def test_every_rank_takes_rank_0s_budget_refits() -> None:
    """Under torchrun the re-fits are rank 0's: the ranks' clocks differ, and a rank that
    re-fitted alone would stop at another epoch and hang the others in their next collective."""
    zero, one = run_on_ranks(_refits_on_rank, WORLD)
    assert zero == one
    assert zero[:2] == (50, [(1, 50)])  # rank 0's fit at 1 s an epoch (rank 1 alone: 11)


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name(
    "torchrun").exists(), reason="no torchrun")
def test_torchrun_trains_cc_on_two_processes_and_rank_0_writes_once(tmp_path: Path) -> None:
    """``torchrun -m corekit.cli train``: one metrics record per epoch, one final line; then,
    the run made to look interrupted after epoch 1, ``--resume`` on both ranks trains epoch 2
    from rank 0's checkpoint; a batch that does not split over the ranks exits with its
    message."""
    out = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "corekit.cli",
           "train", "cc", "--data", "digits", "--dist-timeout", "60s", "--no-progress",
           "--set", "train.epochs=2", "--set", "train.checkpoint_every=1",
           "--set", "data.subset=256", "--set", "train.batch_size=64"]

    def train(*extra: str) -> subprocess.CompletedProcess:
        done = subprocess.run([*cmd, *extra], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    done = train("--out", str(out))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert "nmi" in json.loads((out / "final.json").read_text())
    assert done.stdout.count("run directory:") == 1

    checkpoint = out / "stages" / "main" / "checkpoint.pt"
    payload = torch.load(checkpoint, weights_only=False)
    payload["epoch"] = 0  # as if stopped after epoch 1
    torch.save(payload, checkpoint)
    (out / "stages" / "main" / "outputs.pt").unlink()
    resumed = train("--out", str(out), "--resume")
    assert resumed.stdout.count("resumed main after epoch 1") == 1
    assert resumed.stdout.count("epoch 2/2") == 1
    assert [json.loads(line)["epoch"] for line in
            (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]

    bad = subprocess.run([*cmd, "--set", "train.batch_size=63", "--out",
                          str(tmp_path / "bad")], capture_output=True, text=True, env=env,
                         timeout=300)
    assert bad.returncode != 0
    assert "train.batch_size = 63 does not divide by the world size 2" in bad.stderr

    budgeted = train("--out", str(tmp_path / "budget"), "--budget", "30s",
                     "--set", "train.epochs=400")
    plan = json.loads((tmp_path / "budget" / "stages" / "main" / "plan.json").read_text())
    records = (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()
    assert plan["refits"] and [json.loads(r)["epoch"] for r in records] == list(
        range(1, len(records) + 1))  # one record an epoch: the ranks stopped together
    assert budgeted.stdout.count("run directory:") == 1

    cpu_sync = subprocess.run([*cmd, "--set", "train.sync_bn=true", "--out",
                               str(tmp_path / "sync")], capture_output=True, text=True, env=env,
                              timeout=300)
    assert "(exitcode: 2)" in cpu_sync.stderr
    assert "rank 0 of 2 stopped: UserError: train.sync_bn = true needs CUDA, but the " \
        "processes train on cpu" in cpu_sync.stderr


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name(
    "torchrun").exists(), reason="no torchrun")
def test_torchrun_writes_the_assignments_of_a_clustered_stage(tmp_path: Path) -> None:
    """A stage assigned by its clusterer (simclr-kmeans) gathers every rank's confidences at
    the stage's end: all ranks take part, and rank 0 writes one row an image."""
    out = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "corekit.cli", "train",
         "simclr-kmeans", "--data", "digits", "--dist-timeout", "60s", "--no-progress",
         "--set", "train.epochs=1", "--set", "data.subset=256", "--set", "train.batch_size=64",
         "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = (out / "assignments.csv").read_text().splitlines()
    assert len(rows) == 1 + 256
