"""Core v2 item 4: named, pluggable state; several per stage; checkpointed; exact resume."""

import math

import pytest
import torch

from corekit import EMA, MemoryBank, Queue
from corekit import checkpoint_io as checkpoint
from corekit import recipe as rc
from corekit.network import Network
from corekit.runner import train
from corekit.testing import plugin_set, run_tiny, tiny_recipe
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")
CKPT = "stages/main/checkpoint.pt"


def tiny_network(dim: int = 4) -> Network:
    encoder = torch.nn.Linear(3, dim)
    encoder.out_dim = dim
    head = torch.nn.Linear(dim, dim)
    head.out_dim, head.produces = dim, "embedding"
    return Network({"backbone": encoder}, {"proj": head}, {"proj": "backbone"})


def labelled_rows(start: int, count: int = 4) -> torch.Tensor:
    return torch.arange(start, start + count, dtype=torch.float32).unsqueeze(1)


def test_queue_truncating_ring_digpro_c7():
    """digpro.md C7: size 10, four pushes of 4 rows labelled 10-13, 20-23, 30-33, 40-43."""
    queue = Queue(tiny_network(1), size=10, dim=1, rule="truncate")
    for start in (10, 20, 30):
        queue.push(labelled_rows(start))
    assert queue.read().squeeze(1).tolist() == [10, 11, 12, 13, 20, 21, 22, 23, 30, 31]
    assert int(queue.ptr) == 0  # rows 32, 33 dropped
    queue.push(labelled_rows(40))
    assert queue.read().squeeze(1).tolist() == [40, 41, 42, 43, 20, 21, 22, 23, 30, 31]
    assert int(queue.ptr) == 4


def test_queue_truncating_ring_returns_to_zero_when_exactly_full():
    queue = Queue(tiny_network(1), size=8, dim=1, rule="truncate")
    queue.push(labelled_rows(10))
    queue.push(labelled_rows(20))  # ptr + r == size: full, back to 0
    assert int(queue.ptr) == 0
    queue.push(labelled_rows(30))
    assert queue.read().squeeze(1).tolist() == [30, 31, 32, 33, 20, 21, 22, 23]


def test_queue_wrapping_ring_overwrites_the_oldest():
    queue = Queue(tiny_network(1), size=10, dim=1, rule="wrap")
    for start in (10, 20, 30):
        queue.push(labelled_rows(start))
    assert queue.read().squeeze(1).tolist() == [32, 33, 12, 13, 20, 21, 22, 23, 30, 31]
    assert int(queue.ptr) == 2


def test_memory_bank_inits():
    net = tiny_network(12)
    gen = torch.Generator().manual_seed(0)
    uniform = MemoryBank(net, 5000, source="proj", init="uniform", generator=gen).read()
    bound = 1 / math.sqrt(12 / 3)
    assert uniform.abs().max() <= bound and uniform.abs().max() > 0.99 * bound
    assert uniform.pow(2).sum(1).mean() == pytest.approx(1.0, abs=0.02)  # E‖row‖² = 1
    assert not torch.allclose(uniform.norm(dim=1), torch.ones(5000))  # not renormalised
    normal = MemoryBank(net, 50, source="proj", generator=gen).read()
    assert torch.allclose(normal.norm(dim=1), torch.ones(50))


def test_memory_bank_momentum_and_fixed_updates():
    bank = MemoryBank(tiny_network(2), 3, source="proj", momentum=0.5)
    bank.features.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    bank.update(torch.tensor([0]), torch.tensor([[0.0, 5.0]]))
    expected = torch.nn.functional.normalize(torch.tensor([0.5, 0.5]), dim=0)
    assert torch.allclose(bank.read()[0], expected)
    assert torch.equal(bank.read()[1:], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def test_memory_bank_momentum_at_0_9_keeps_nine_tenths_of_the_old_row():
    """v_i <- n(m*v_i + (1 - m)*n(f_i)) at m = 0.9 (not 0.5, where old and new weigh the
    same and a swapped rule would go unnoticed): old row (1, 0), fresh feature (0, 5) ->
    n((0.9, 0.1)) = (0.9, 0.1)/sqrt(0.82)."""
    bank = MemoryBank(tiny_network(2), 3, source="proj", momentum=0.9)
    bank.features.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    bank.update(torch.tensor([0, 2]), torch.tensor([[0.0, 5.0], [3.0, 4.0]]))
    norm = math.sqrt(0.82)
    assert bank.read()[0].tolist() == pytest.approx([0.9 / norm, 0.1 / norm], abs=1e-6)
    # row 2: 0.9*(1, 0) + 0.1*(0.6, 0.8) = (0.96, 0.08), normalised
    row2 = math.hypot(0.96, 0.08)
    assert bank.read()[2].tolist() == pytest.approx([0.96 / row2, 0.08 / row2], abs=1e-6)
    assert bank.read()[1].tolist() == [0.0, 1.0]  # a row not in the batch stays


def test_memory_bank_encode_init_and_fixed_rows(tmp_path):
    from corekit.composer import compose
    from corekit.engine.trainer import StageTrainer
    from corekit.runner import DataCache

    raw = tiny_recipe(state={"emb": {"type": "memory_bank", "source": "online:backbone",
                                     "init": "encode", "update": "fixed"}})
    stage = rc.validate(raw).stages[0]
    cache = DataCache(torch.device("cpu"))
    c = compose(PLUGINS, stage, lambda n: cache(n, 256), torch.device("cpu"), None, 3)
    trainer = StageTrainer(c, tmp_path, torch.device("cpu"), None, 0, lambda _: None,
                           progress=False)
    random_rows = c.state["emb"].read().clone()
    trainer.hooks.fire("on_stage_start", trainer.context(0))
    encoded = torch.nn.functional.normalize(trainer.features("online:backbone", c.train_set))
    assert torch.allclose(c.state["emb"].read(), encoded, atol=1e-6)
    assert not torch.allclose(random_rows, encoded, atol=1e-3)
    trainer.run()  # "fixed": training never moves the rows after the encode at stage start
    assert torch.allclose(c.state["emb"].read(), encoded, atol=1e-6)


def test_ema_schedule_override_and_buffers():
    online = tiny_network(2)
    online.encoders["backbone"].register_buffer("stat", torch.zeros(1))
    ema = EMA(online, ["proj"], momentum=0.9, buffers=True)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    online.encoders["backbone"].stat.fill_(7.0)
    before = ema.network.part("proj").weight.clone()
    ema.update(online, 0.9)
    after = ema.network.part("proj").weight
    assert torch.allclose(after, 0.9 * before + 0.1 * (before + 1.0))
    assert float(ema.network.part("backbone").stat) == 7.0  # buffers copied
    ema.override(0.0)  # DigPro-style: a component sets the next scheduled momentum
    step = type("S", (), {"model": type("M", (), {"online": online})(), "global_step": 1})()
    ema.after_optimizer_step(step)
    assert torch.equal(ema.network.part("proj").weight, online.part("proj").weight)
    with torch.no_grad():
        online.part("proj").weight.add_(1.0)
    copied = ema.network.part("proj").weight.clone()
    ema.after_optimizer_step(step)  # the override applied once: back to m = 0.9
    assert torch.allclose(ema.network.part("proj").weight, copied + 0.1)
    cosine = EMA(online, ["proj"], momentum=0.99, schedule="cosine", total_steps=100)
    assert cosine.momentum(0) == pytest.approx(0.99) and cosine.momentum(100) == 1.0
    assert cosine.momentum(50) == pytest.approx(1 - 0.01 * 0.5)


def two_bank_recipe(**train_options):
    return tiny_recipe(
        state={"bank_a": {"type": "memory_bank", "source": "online:proj", "momentum": 0.5},
               "bank_b": {"type": "memory_bank", "source": "target:proj", "init": "uniform"},
               "keys": {"type": "queue", "size": 1000, "source": "target:proj",
                        "views": [0, 1]}},
        model={"target": {"parts": ["proj", "cluster"], "momentum": 0.9},
               "heads": {"cluster": {"type": "cluster_head", "input": "backbone"}}},
        losses={"pull": {"type": "toy.bank_pull", "weight": 0.1},
                "entropy": {"type": "batch_marginal_entropy", "head": "cluster"}},
        train={"epochs": 3, **train_options},
        clusterer={"every": 1, "before_training": True},
        eval={"assign": "head:target:cluster"})


def test_several_named_states_train_checkpoint_and_resume_exactly(tmp_path):
    raw = two_bank_recipe()
    run_tiny(raw, tmp_path / "full", PLUGINS)
    run_tiny(rc.merge(raw, {"train": {"epochs": 2}}), tmp_path / "part", PLUGINS)
    train(rc.validate(raw), tmp_path / "part", PLUGINS, resume=True, log=lambda _: None,
          progress=False)
    full = checkpoint.load(tmp_path / "full" / CKPT)["state"]
    resumed = checkpoint.load(tmp_path / "part" / CKPT)["state"]
    assert set(full) == {"target", "bank_a", "bank_b", "keys", "pseudo"}
    for name, tensors in full.items():
        for key, value in tensors.items():
            assert torch.equal(value, resumed[name][key]), (name, key)
    assert int(full["keys"]["ptr"]) == (3 * 3 * 2 * 64) % 1000  # 3 epochs x 3 steps x 2 views
    assert not torch.equal(full["bank_a"]["features"][:64], full["bank_b"]["features"][:64])


def test_eval_assign_reads_the_target_copy_of_a_head(tmp_path):
    from corekit.composer import compose
    from corekit.engine.trainer import StageTrainer
    from corekit.parts import parse_assign
    from corekit.runner import DataCache

    stage = rc.validate(two_bank_recipe(epochs=1)).stages[0]
    cache = DataCache(torch.device("cpu"))
    c = compose(PLUGINS, stage, lambda n: cache(n, 256), torch.device("cpu"), None, 3)
    trainer = StageTrainer(c, tmp_path, torch.device("cpu"), None, 0, lambda _: None,
                           progress=False)
    trainer.run()
    target = trainer.features("target:cluster", c.train_set)
    online = trainer.features("online:cluster", c.train_set)
    assert torch.equal(trainer.assignments(), target.argmax(1))
    assert not torch.allclose(target, online)  # the EMA copy, not the online head
    assert parse_assign("head:cluster") == ("online", "cluster")
    with pytest.raises(Exception, match="must be 'clusterer' or 'head:<name>'"):
        parse_assign("argmax")
