"""specs/digpro.md §9 C4 (group reset from the bank), C7 (the bank is the core's truncating
queue), C8 (reset schedule) and C9 (double EMA through the composed target and the loss's
``on_step_start`` hook)."""

from __future__ import annotations

import pytest
import torch
from deepclust_digpro import DynamicGrouping, is_reset_step, kmeans_groups
from digpro_fixtures import u
from torch import nn
from torch.nn import functional as F

from corekit import EMA, Queue
from corekit import recipe as rc
from corekit.network import Network, Networks
from corekit.step import Step


def tiny_network(width: int = 2) -> Network:
    return Network({"backbone": nn.Linear(1, width, bias=False)}, {}, {})


def bare_step(global_step: int, states: dict, model: Networks | None = None) -> Step:
    return Step(model=model or Networks(tiny_network()), views=[], indices=torch.arange(1),
                epoch=0, global_step=global_step, epochs=1, states=states)


def c4_bank() -> Queue:
    angles = (0, 10, 20, 100, 110, 120, 250, 260)
    queue = Queue(tiny_network(), size=len(angles), dim=2, rule="truncate")
    queue.push(torch.tensor([u(a) for a in angles], dtype=torch.float32))
    return queue


def angle_set(groups: torch.Tensor) -> list[float]:
    return sorted((torch.rad2deg(torch.atan2(groups[:, 1], groups[:, 0])) % 360).tolist())


# -- C4 --------------------------------------------------------------------------------------
def test_c4_group_reset_from_the_bank() -> None:
    centres = kmeans_groups(c4_bank().read(), 3, seed=0)
    assert angle_set(centres) == pytest.approx([10.0, 110.0, 255.0], abs=1e-4)
    assert torch.allclose(centres.norm(dim=1), torch.ones(3))


def test_c4_reset_runs_in_the_step_hook_reading_the_queue_state() -> None:
    loss = DynamicGrouping(n_clusters=3, dim=2, seed=0)  # reset every K = 3 steps
    initial = loss.groups.clone()
    assert (initial >= 0).all() and (initial < 1).all()  # U[0, 1), unnormalised
    # step 3 is a reset step: no EMA update, so no "target" state is needed
    loss.on_step_start(bare_step(3, {"bank": c4_bank()}))
    assert loss.resets == 1
    assert angle_set(loss.groups) == pytest.approx([10.0, 110.0, 255.0], abs=1e-4)
    assert torch.allclose(loss.groups.norm(dim=1), torch.ones(3))
    # the seed makes the reset reproducible
    again = DynamicGrouping(n_clusters=3, dim=2, seed=0)
    again.on_step_start(bare_step(3, {"bank": c4_bank()}))
    assert torch.equal(again.groups, loss.groups)


# -- C7 --------------------------------------------------------------------------------------
def labelled(first: int) -> torch.Tensor:
    return torch.arange(first, first + 4, dtype=torch.float32).unsqueeze(1)


def test_c7_bank_ring_truncates() -> None:
    queue = Queue(tiny_network(1), size=10, dim=1, rule="truncate")
    for first in (10, 20):
        queue.push(labelled(first))
    queue.push(labelled(30))
    assert queue.read().squeeze(1).tolist() == [10, 11, 12, 13, 20, 21, 22, 23, 30, 31]
    assert int(queue.ptr) == 0  # rows 32, 33 dropped
    queue.push(labelled(40))
    assert queue.read().squeeze(1).tolist() == [40, 41, 42, 43, 20, 21, 22, 23, 30, 31]
    assert int(queue.ptr) == 4


def kept_rows(rows_per_step: int, steps: int, size: int = 2560) -> list[int]:
    """How many of each push's rows the truncating ring keeps."""
    queue = Queue(tiny_network(1), size=size, dim=1, rule="truncate")
    kept = []
    for n in range(steps):
        before = queue.read().clone()
        queue.push(torch.full((rows_per_step, 1), 10.0 + n))
        kept.append(int((queue.read() != before).sum()))
    return kept


def test_c7_full_size_facts() -> None:
    assert sum(kept_rows(256, 10)) == 2560 and kept_rows(256, 10)[-1] == 256
    assert sum(kept_rows(512, 5)) == 2560
    assert kept_rows(2048, 4) == [2048, 512, 2048, 512]


def test_c7_the_recipe_bank_is_the_core_queue(compose_step) -> None:
    composed, step = compose_step(0)
    bank = composed.state["bank"]
    assert isinstance(bank, Queue)
    assert (bank.size, bank.rule, bank.views, bank.normalize) == (2560, "truncate", [0, 1], True)
    assert (bank.branch, bank.part) == ("online", "proj")
    assert bank.read().shape == (2560, 64)
    bank.after_optimizer_step(step)  # enqueue [q̂_a; q̂_b], online, normalised, detached
    batch = step.views[0].shape[0]
    expected = torch.cat([F.normalize(step.output("proj", v), dim=1) for v in (0, 1)])
    assert torch.allclose(bank.read()[: 2 * batch], expected)
    assert int(bank.ptr) == 2 * batch


# -- C8 --------------------------------------------------------------------------------------
def test_c8_reset_schedule() -> None:
    assert [n for n in range(1, 41) if is_reset_step(n, 10)] == [10, 20, 30, 40]
    assert not is_reset_step(1, 1) and is_reset_step(2, 1)  # n > 1
    assert not any(is_reset_step(n, 0) for n in range(1, 100))  # 0: never
    # a compressed schedule (a budget re-fit) steps 8, 11, 14, ...: 10 and 20 are passed over
    compressed = list(range(2, 30, 3))
    assert [n for prev, n in zip(compressed, compressed[1:], strict=False)
            if is_reset_step(n, 10, prev)] == [11, 20]
    # resets in 1000 epochs with R = K (spec §5): ImageNet-10, Tiny-ImageNet, RSOD
    for ipe, k, resets in ((101, 10, 10_100), (97, 200, 485), (3, 4, 750)):
        assert sum(is_reset_step(n, k) for n in range(1, 1000 * ipe + 1)) == resets


@pytest.mark.parametrize(("rows_per_step", "k", "real"), [(256, 10, 2304), (512, 4, 1536)])
def test_c8_first_reset_sees_a_partly_random_bank(rows_per_step: int, k: int, real: int) -> None:
    """ImageNet-10 (2B = 256, K = 10) and RSOD (2B = 512, K = 4): the first reset, at the start
    of step K, sees the K − 1 pushes of steps 1..K−1 and the rest of the random init (P5)."""
    queue = Queue(tiny_network(1), size=2560, dim=1, rule="truncate")
    initial = queue.read().clone()
    first = next(n for n in range(1, 100) if is_reset_step(n, k))
    for _ in range(1, first):
        queue.push(torch.full((rows_per_step, 1), 7.0))
    assert first == k
    assert int((queue.read() != initial).sum()) == real


def test_c8_hook_resets_on_schedule_and_skips_the_extra_ema() -> None:
    online = tiny_network()
    target = EMA(online, ["backbone"], momentum=0.996, update_at="before_backward")
    updates: list[float] = []
    target.update = lambda network, momentum: updates.append(momentum)
    loss = DynamicGrouping(n_clusters=3, dim=2, seed=0)
    states = {"bank": c4_bank(), "target": target}
    resets = []
    for n in range(1, 13):
        before = loss.resets
        loss.on_step_start(bare_step(n, states, Networks(online, {"target": target})))
        resets.append(loss.resets - before)
    assert [n for n, r in enumerate(resets, 1) if r] == [3, 6, 9, 12]
    assert updates == [0.99] * 8  # the 8 non-reset steps


# -- C9 --------------------------------------------------------------------------------------
def digits_target_at_0996(trainer_for):
    trainer = trainer_for("model.target.momentum=0.996")
    c = trainer.composed
    target = c.state["target"]
    with torch.no_grad():
        for p in c.model.online.parameters():
            p.zero_()
        for p in target.network.parameters():
            p.fill_(1.0)
    return trainer, target


def run_hooks(trainer, steps: range) -> None:
    """The engine's hook dispatch around the losses, as ``StageTrainer.train_step`` fires it."""
    for n in steps:
        trainer.global_step = n
        step = trainer.make_step(torch.arange(1), [], 0)
        trainer.hooks.fire("on_step_start", step)
        trainer.hooks.fire("before_backward", step)


def target_values(target) -> torch.Tensor:
    return torch.cat([p.flatten() for p in target.network.parameters()])


def test_c9_effective_momentum_through_the_composed_ema_and_hook(trainer_for) -> None:
    trainer, target = digits_target_at_0996(trainer_for)
    assert isinstance(target, EMA) and target.update_at == "before_backward"
    assert target.base_momentum == 0.996
    loss = next(w.fn for w in trainer.composed.losses if w.name == "group")
    assert loss.extra_momentum == 0.99 and loss.reset_every == 10
    run_hooks(trainer, range(1, 2))
    assert torch.allclose(target_values(target), torch.tensor(0.98604), atol=1e-6)
    run_hooks(trainer, range(2, 11))  # steps 2-9 normal, step 10 a reset
    assert loss.resets == 1
    assert torch.allclose(target_values(target), torch.tensor(0.877627), atol=1e-6)
    # the EMA does not update a second time after the optimizer step
    step = trainer.make_step(torch.arange(1), [], 0)
    before = target_values(target).clone()
    target.after_optimizer_step(step)
    assert torch.equal(target_values(target), before)


def test_c9_reset_step_alone_and_the_paper_literal_variant(trainer_for) -> None:
    trainer, target = digits_target_at_0996(trainer_for)
    run_hooks(trainer, range(10, 11))  # a reset step: 0.996 only
    assert torch.allclose(target_values(target), torch.tensor(0.996), atol=1e-7)
    trainer, target = digits_target_at_0996(trainer_for)
    next(w.fn for w in trainer.composed.losses if w.name == "group").extra_momentum = 1.0
    run_hooks(trainer, range(1, 11))
    assert torch.allclose(target_values(target), torch.tensor(0.960712), atol=1e-6)


@pytest.mark.parametrize(("k", "factor"), [(4, 0.954867), (10, 0.877627), (12, 0.853295),
                                           (15, 0.818056), (21, 0.751883)])
def test_c9_per_block_factor(k: int, factor: float) -> None:
    """Per K-block factor 0.99^(K−1)·0.996^K, by the loss's hook on a scalar EMA."""
    online = Network({"backbone": nn.Linear(1, 1, bias=False)}, {}, {})
    teacher = EMA(online, ["backbone"], momentum=0.996, update_at="before_backward")
    with torch.no_grad():
        online.get_parameter("encoders.backbone.weight").zero_()
        teacher.network.get_parameter("encoders.backbone.weight").fill_(1.0)
    loss = DynamicGrouping(n_clusters=k, dim=2, seed=0)
    bank = Queue(online, size=64, dim=2, rule="truncate")
    model = Networks(online, {"target": teacher})
    for n in range(1, k + 1):
        step = bare_step(n, {"bank": bank, "target": teacher}, model)
        loss.on_step_start(step)
        teacher.before_backward(step)
    weight = teacher.network.get_parameter("encoders.backbone.weight").item()
    assert weight == pytest.approx(factor, abs=1e-6)


def test_paper_presets_use_the_double_ema(plugins) -> None:
    for preset in ("rsod", "imagenet10", "tiny_imagenet"):
        stage = rc.resolve("digpro", plugins.find_recipe, preset).stages[0]
        assert stage.model.target.momentum == 0.996
        assert stage.model.target.options == {"update_at": "before_backward"}
        group = stage.losses["group"].options
        assert group["extra_momentum"] == 0.99 and group.get("skip_extra_on_reset", True)
