"""The propos plugin as installed: entry point, registrations, recipe presets, a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deepclust_propos import PSA, PSL, LatentGaussianNoise

from corekit import recipe as rc
from corekit.plugins import Plugins
from corekit.runner import train
from corekit.testing import assert_above_chance, record_evaluations


def test_loads_through_its_entry_point(plugins: Plugins) -> None:
    info = plugins.plugin("propos")
    assert info is not None and info.status == "loaded", info
    assert info.distribution == "deepclust-plugin-propos"
    assert info.components == {"head": ["latent_gaussian_noise"],
                               "loss": ["propos_psa", "psa", "propos_psl", "psl"],
                               "recipe": ["propos"]}


def test_registrations(plugins: Plugins) -> None:
    registry = plugins.registry
    assert registry.get("head", "latent_gaussian_noise").obj is LatentGaussianNoise
    assert registry.get("loss", "propos_psa").obj is PSA
    assert registry.get("loss", "psa").obj is PSA
    assert registry.get("loss", "propos.psl").obj is PSL
    assert Path(registry.get("recipe", "propos").obj).is_file()


def presets() -> list[str]:
    from deepclust_propos.plugin import RECIPES

    return list(rc.load_toml(RECIPES / "propos.toml")["presets"])


@pytest.mark.parametrize("preset", presets())
def test_every_preset_validates_with_one_warm_up_length(plugins: Plugins, preset: str) -> None:
    stage = rc.resolve("propos", plugins.find_recipe, preset).stages[0]
    warm_up = stage.train.schedule.options["warmup_epochs"]
    assert stage.losses["psl"].start_epoch == warm_up
    assert stage.model.heads["noisy"].options["start_epoch"] == warm_up
    assert stage.model.heads["pred"].input == "noisy"
    assert stage.model.target.parts == ["backbone", "proj"]
    assert stage.clusterer.features == "target:proj"


def test_paper_defaults(plugins: Plugins) -> None:
    stage = rc.resolve("propos", plugins.find_recipe, "cifar10").stages[0]
    assert stage.model.backbone.type == "resnet18_cifar"
    assert stage.model.heads["proj"].options == {"hidden": 4096, "out_dim": 256,
                                                  "batch_norm": True}
    assert stage.model.heads["noisy"].options == {"std": 0.001, "start_epoch": 50}
    assert stage.train.optimizer.lr_mult == {"heads.pred": 10.0}
    assert (stage.train.batch_size, stage.train.optimizer.lr) == (512, 0.1)
    assert stage.losses["psl"].weight == 0.1
    assert stage.augment.options["strength"] == 0.5 and stage.augment.normalize


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list:
    return record_evaluations(monkeypatch)


def test_tiny_training_run_writes_final_json(plugins: Plugins, tmp_path: Path,
                                             evaluations: list) -> None:
    recipe = rc.resolve("propos", plugins.find_recipe, "digits",
                        ["train.epochs=1", "train.steps_per_epoch=3"])
    final = train(recipe, tmp_path, plugins, log=lambda _: None, progress=False)
    written = json.loads((tmp_path / "final.json").read_text())
    assert written["nmi"] == pytest.approx(final["nmi"])
    assert_above_chance(written, evaluations)


@pytest.mark.slow
def test_digits_preset_clusters_well(plugins: Plugins, tmp_path: Path) -> None:
    recipe = rc.resolve("propos", plugins.find_recipe, "digits")
    final = train(recipe, tmp_path, plugins, log=lambda _: None, progress=False)
    assert final["nmi"] > 0.8 and final["acc"] > 0.8  # k-means on raw pixels: NMI 0.742
