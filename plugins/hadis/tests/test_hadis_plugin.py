"""The hadis plugin as installed: entry point, aliases of ProPos's losses, shared noise, recipe
presets against specs/hadis.md §5, and a tiny end-to-end run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from deepclust_hadis import HSD
from deepclust_hadis.plugin import RECIPES
from deepclust_propos import PSA, PSL
from deepclust_propos.plugin import RECIPES as PROPOS_RECIPES

from corekit import recipe as rc
from corekit.composer import Composed
from corekit.plugins import Plugins
from corekit.runner import train
from corekit.step import Step
from corekit.testing import assert_above_chance, record_evaluations


def test_loads_through_its_entry_point(plugins: Plugins) -> None:
    info = plugins.plugin("hadis")
    assert info is not None and info.status == "loaded", info
    assert info.distribution == "deepclust-plugin-hadis"
    assert info.components["loss"] == ["dsa", "hadis_dsa", "pcl", "hadis_pcl", "hsd",
                                       "hadis_hsd"]


def test_dsa_and_pcl_are_the_propos_objects(plugins: Plugins) -> None:
    registry = plugins.registry
    for alias in ("dsa", "hadis_dsa", "hadis.dsa"):
        assert registry.get("loss", alias).obj is registry.get("loss", "propos_psa").obj is PSA
    for alias in ("pcl", "hadis_pcl", "hadis.pcl"):
        assert registry.get("loss", alias).obj is registry.get("loss", "propos_psl").obj is PSL
    assert registry.get("loss", "hsd").obj is HSD


HSD_OVERRIDES = ('losses.hsd.type="hsd"', 'losses.hsd.pred="pred"', 'losses.hsd.target="proj"',
                 "losses.hsd.temperature=0.5")


def loss_values(composed: Composed, step: Step, seed: int = 1) -> dict[str, float]:
    """Every loss of ``composed`` on ``step``, the noise of both views drawn first from
    ``seed`` (so two recipes see the same draws)."""
    torch.manual_seed(seed)
    step.output("pred", 0), step.output("pred", 1)
    return {loss.name: loss.fn(step).item() for loss in composed.losses}


def test_alias_recipes_give_identical_losses(compose_step: Callable) -> None:
    """The hadis recipe (DSA, PCL, HSD under HaDis's names) and the propos recipe (PSA, PSL
    under ProPos's names) with HSD added give the same loss values on one batch, one set of
    weights and one noise draw: ``dsa``/``pcl`` are ProPos's losses with the same defaults."""
    epoch = 6  # after the warm-up: the noise is on and PCL is active
    hadis, hadis_step = compose_step("hadis", epoch)
    propos, _ = compose_step("propos", epoch, *HSD_OVERRIDES)
    assert {w.name: w.type for w in hadis.losses} == {"psa": "dsa", "psl": "pcl",
                                                       "hsd": "hsd"}
    assert {w.name: w.type for w in propos.losses} == {"psa": "propos_psa",
                                                        "psl": "propos_psl", "hsd": "hsd"}
    propos.model.online.load_state_dict(hadis.model.online.state_dict())
    for name, module in hadis.state.items():
        propos.state[name].load_state_dict(module.state_dict())
    propos_step = Step(model=propos.model, views=hadis_step.views, indices=hadis_step.indices,
                       epoch=epoch, global_step=1, epochs=hadis_step.epochs,
                       states=propos.state)

    by_hadis = loss_values(hadis, hadis_step)
    by_propos = loss_values(propos, propos_step)
    assert set(by_hadis) == {"psa", "psl", "hsd"}
    assert by_hadis == by_propos
    redrawn = Step(model=propos.model, views=hadis_step.views, indices=hadis_step.indices,
                   epoch=epoch, global_step=1, epochs=hadis_step.epochs, states=propos.state)
    assert loss_values(propos, redrawn, seed=2)["psa"] != by_hadis["psa"]  # the draw matters
    pcl, psl = (next(w for w in c.losses if w.name == "psl") for c in (hadis, propos))
    assert pcl.weight == psl.weight == 0.1 and pcl.start_epoch == psl.start_epoch == 5


def test_composer_injects_n_clusters_into_pcl(compose_step: Callable) -> None:
    composed, _ = compose_step("hadis", 0)
    pcl = next(loss.fn for loss in composed.losses if loss.name == "psl")
    assert isinstance(pcl, PSL) and pcl.n_clusters == 10


def test_dsa_and_hsd_share_one_noisy_prediction_per_view(compose_step: Callable) -> None:
    composed, step = compose_step("hadis", 10)
    network = composed.model.online
    assert network.part("noisy").sigma > 0
    calls: list[torch.Tensor] = []
    network.part("pred").register_forward_hook(lambda m, i, o: calls.append(o))
    by_name = {loss.name: loss.fn for loss in composed.losses}
    dsa, hsd = by_name["psa"](step), by_name["hsd"](step)
    assert len(calls) == 2  # one predictor pass per view, read by both losses
    assert step.output("pred", 0) is calls[0] and step.output("pred", 1) is calls[1]
    assert torch.isfinite(dsa) and torch.isfinite(hsd)
    noisy, clean = step.output("noisy", 0), step.output("proj", 0)
    assert not torch.equal(noisy, clean)


def test_noise_is_off_before_start_epoch(compose_step: Callable) -> None:
    composed, step = compose_step("hadis", 4)
    assert composed.model.online.part("noisy").sigma == 0.0
    assert torch.equal(step.output("noisy", 0), step.output("proj", 0))
    composed, step = compose_step("hadis", 5)
    assert composed.model.online.part("noisy").sigma == 0.001


def presets() -> list[str]:
    """Every preset of the resolved recipe, the ones inherited from propos included."""
    raw = rc.resolve_raw(str(RECIPES / "hadis.toml"), lambda name: PROPOS_RECIPES / f"{name}.toml")
    return list(raw["presets"])


@pytest.mark.parametrize("preset", presets())
def test_every_preset_validates_with_one_warm_up_length(plugins: Plugins, preset: str) -> None:
    stage = rc.resolve("hadis", plugins.find_recipe, preset).stages[0]
    warm_up = stage.train.schedule.options["warmup_epochs"]
    assert stage.losses["psl"].start_epoch == warm_up
    assert stage.model.heads["noisy"].options["start_epoch"] == warm_up
    assert {name: loss.type for name, loss in stage.losses.items()} == {
        "psa": "dsa", "psl": "pcl", "hsd": "hsd"}
    assert stage.losses["hsd"].weight == 1.0 and stage.losses["hsd"].start_epoch == 0
    assert stage.losses["hsd"].options["temperature"] == 0.5


# specs/hadis.md §5: size, batch, lr, λ, EMA schedule, sampler, K (None = the data set's)
PAPER = {
    "cifar10": (32, 256, 0.05, 0.1, "constant", "shuffle", None),
    "cifar20": (32, 256, 0.05, 0.05, "cosine", "cluster_balanced", None),
    "stl10": (96, 128, 0.025, 0.1, "constant", "shuffle", None),
    "imagenet10": (96, 128, 0.025, 0.05, "constant", "shuffle", 10),
    "imagenet_dogs": (96, 128, 0.025, 0.1, "constant", "shuffle", 15),
}


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_paper_presets_follow_the_spec_table(plugins: Plugins, preset: str) -> None:
    stage = rc.resolve("hadis", plugins.find_recipe, preset).stages[0]
    size, batch, lr, lam, ema, sampler, k = PAPER[preset]
    assert stage.augment.size == size and stage.augment.normalize
    assert (stage.train.batch_size, stage.train.optimizer.lr) == (batch, lr)
    assert stage.losses["psl"].weight == lam
    assert (stage.model.target.schedule, stage.model.target.momentum) == (ema, 0.996)
    assert stage.train.sampler.type == sampler and stage.data.n_clusters == k
    assert stage.model.backbone.type == "resnet18_cifar" and stage.train.epochs == 1000
    opt = stage.train.optimizer
    assert (opt.type, opt.options["momentum"], opt.weight_decay, opt.lr_mult) == (
        "sgd", 0.9, 5e-4, {"heads.pred": 10.0})
    assert stage.model.heads["noisy"].options == {"std": 0.001, "start_epoch": 50}
    assert stage.losses["psl"].options["temperature"] == 0.5
    assert stage.clusterer.options == {"n_init": 10, "max_iter": 300}


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list:
    return record_evaluations(monkeypatch)


def test_tiny_training_run_writes_final_json(plugins: Plugins, tmp_path: Path,
                                             evaluations: list) -> None:
    recipe = rc.resolve("hadis", plugins.find_recipe, "digits",
                        ["train.epochs=1", "train.steps_per_epoch=3"])
    final = train(recipe, tmp_path, plugins, log=lambda _: None, progress=False)
    written = json.loads((tmp_path / "final.json").read_text())
    assert written["nmi"] == pytest.approx(final["nmi"])
    assert_above_chance(written, evaluations)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"psa", "hsd"} <= set(records[-1]) and "psl" not in records[-1]  # PCL gated


@pytest.mark.slow
def test_digits_preset_clusters_well(plugins: Plugins, tmp_path: Path) -> None:
    recipe = rc.resolve("hadis", plugins.find_recipe, "digits")
    final = train(recipe, tmp_path, plugins, log=lambda _: None, progress=False)
    assert final["nmi"] > 0.8 and final["acc"] > 0.8  # k-means on raw pixels: NMI 0.742
