"""The digpro plugin as installed: entry point, aliases of ProPos's losses, the group state
(init, seed, width check, checkpoint), the shared predictor, and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from deepclust_digpro import DynamicGrouping
from deepclust_propos import PSA, PSL

from corekit import checkpoint_io as checkpoint
from corekit import recipe as rc
from corekit.composer import CompositionError, compose
from corekit.plugins import Plugins
from corekit.runner import train

LOSSES = ["digpro_base", "digpro_dynamic_grouping", "dynamic_grouping",
          "digpro_prototype_aggregation", "prototype_aggregation"]


def test_loads_through_its_entry_point(plugins: Plugins) -> None:
    info = plugins.plugin("digpro")
    assert info is not None and info.status == "loaded", info
    assert info.distribution == "deepclust-plugin-digpro"
    assert info.components["loss"] == LOSSES
    assert info.components["need"] == ["digpro_group_width"]
    assert info.components["recipe"] == ["digpro"]


def test_base_and_prototype_aggregation_are_the_propos_objects(plugins: Plugins) -> None:
    registry = plugins.registry
    for alias in ("digpro_base", "digpro.digpro_base"):
        assert registry.get("loss", alias).obj is registry.get("loss", "propos_psa").obj is PSA
    for alias in ("digpro_prototype_aggregation", "prototype_aggregation"):
        assert registry.get("loss", alias).obj is registry.get("loss", "propos_psl").obj is PSL
    for alias in ("digpro_dynamic_grouping", "dynamic_grouping"):
        assert registry.get("loss", alias).obj is DynamicGrouping


def test_composed_losses_and_group_state(compose_step) -> None:
    composed, _ = compose_step(0)
    by_name = {w.name: w for w in composed.losses}
    assert {n: w.type for n, w in by_name.items()} == {
        "psa": "digpro_base", "psl": "digpro_prototype_aggregation",
        "group": "digpro_dynamic_grouping"}
    group = by_name["group"].fn
    assert isinstance(group, DynamicGrouping) and group.n_groups == 10
    assert group.reset_every == 10 and by_name["psl"].fn.n_clusters == 10
    assert group.groups.shape == (10, 64) and group.groups.dtype == torch.float32
    # U[0, 1) elementwise, not normalised (the code's init, spec §2.6, P7)
    assert (group.groups >= 0).all() and (group.groups < 1).all()
    assert not torch.allclose(group.groups.norm(dim=1), torch.ones(10))
    assert set(group.state_dict()) == {"groups", "reset_seed"}


def test_group_init_is_seeded() -> None:
    a, b = (DynamicGrouping(n_clusters=4, dim=8, seed=3) for _ in range(2))
    assert torch.equal(a.groups, b.groups) and torch.equal(a.reset_seed, b.reset_seed)
    assert not torch.equal(a.groups, DynamicGrouping(n_clusters=4, dim=8, seed=4).groups)
    torch.manual_seed(11)
    c = DynamicGrouping(n_clusters=4, dim=8)  # no seed: the run's torch RNG
    torch.manual_seed(11)
    assert torch.equal(c.groups, DynamicGrouping(n_clusters=4, dim=8).groups)


def test_group_width_must_match_the_heads(plugins: Plugins, digits) -> None:
    stage = rc.resolve("digpro", plugins.find_recipe, "digits",
                       ["losses.group.dim=32"]).stages[0]
    with pytest.raises(CompositionError, match="dim = 32 .* online:proj is 64 wide"):
        compose(plugins, stage, lambda name: digits, torch.device("cpu"))


def test_missing_bank_is_a_compose_error(plugins: Plugins, digits) -> None:
    stage = rc.resolve("digpro", plugins.find_recipe, "digits",
                       ['losses.group.bank="keys"']).stages[0]
    with pytest.raises(CompositionError, match=r"state 'keys' of type 'queue'"):
        compose(plugins, stage, lambda name: digits, torch.device("cpu"))


def test_one_predictor_on_the_noisy_and_the_clean_projection(compose_step) -> None:
    composed, step = compose_step(10)  # after the warm-up: the noise is on
    net = composed.model.online
    assert net.part("pred_clean") is net.part("pred")
    assert net.part("noisy").sigma > 0
    calls: list[torch.Tensor] = []
    net.part("pred").register_forward_hook(lambda m, i, o: calls.append(i[0]))
    clean, noisy = step.output("pred_clean", 0), step.output("pred", 0)
    assert len(calls) == 2  # two predictor passes, not one concatenated batch
    proj = step.output("proj", 0)
    assert torch.equal(calls[0], proj) and not torch.equal(calls[1], proj)
    assert calls[0].shape == calls[1].shape == proj.shape
    assert not torch.equal(clean, noisy)


def test_tiny_training_run_checkpoints_the_groups(plugins: Plugins, tmp_path: Path) -> None:
    recipe = rc.resolve("digpro", plugins.find_recipe, "digits",
                        ["train.epochs=1", "train.steps_per_epoch=5",
                         "losses.group.reset_every=2", "train.checkpoint_every=1"])
    final = train(recipe, tmp_path, plugins, log=lambda _: None, progress=False)
    written = json.loads((tmp_path / "final.json").read_text())
    assert written["nmi"] == pytest.approx(final["nmi"]) and 0 < final["nmi"] <= 1
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"psa", "group"} <= set(records[-1]) and "psl" not in records[-1]  # L_proto gated
    saved = checkpoint.load(tmp_path / "stages" / "main" / "checkpoint.pt")["losses"]["group"]
    assert saved["groups"].shape == (10, 64)
    # the last step (5) was not a reset: the saved groups are moved centres, no longer unit
    assert not torch.allclose(saved["groups"].norm(dim=1), torch.ones(10))
    fresh = DynamicGrouping(n_clusters=10, dim=64)
    fresh.load_state_dict(saved)
    assert torch.equal(fresh.groups, saved["groups"])
