"""The scan plugin as installed: registration, the recipe on the features-kmeans backbone, and
a short run on frozen features that beats chance and never runs the backbone in training."""

from __future__ import annotations

import pytest

from corekit import recipe as rc
from corekit.components import backbones
from corekit.engine.trainer import StageTrainer
from corekit.plugins import load_plugins
from corekit.runner import train
from corekit.testing import assert_above_chance, load_only, record_evaluations

# an offline, random, frozen stand-in for the pretrained backbone
OFFLINE = ['model.backbone={type = "mlp", hidden = 256, out_dim = 64}', "augment.size=8",
           "augment.normalize=true", "train.epochs=30", "train.eval_every=30"]


@pytest.fixture(scope="module")
def plugins():
    return load_only("scan")


@pytest.fixture
def evaluations(monkeypatch):
    return record_evaluations(monkeypatch)


def test_plugin_loads_through_its_entry_point():
    info = load_plugins().plugin("scan")
    assert info is not None and info.status == "loaded", info
    assert info.distribution == "deepclust-plugin-scan"


def test_recipe_trains_a_head_on_the_features_kmeans_backbone(plugins):
    scan = rc.resolve("scan", plugins.find_recipe, "digits", []).stages[0]
    kmeans = rc.resolve("features-kmeans", plugins.find_recipe, "digits", []).stages[0]
    assert scan.model.backbone == kmeans.model.backbone
    assert scan.augment == kmeans.augment
    assert scan.train.freeze == ["backbone"] and scan.clusterer is None
    assert scan.eval.assign == "head:cluster"


def test_a_short_run_beats_chance_without_running_the_backbone_in_training(
        plugins, tmp_path, evaluations, monkeypatch):
    monkeypatch.setenv("DEEPCLUST_CACHE_DIR", str(tmp_path / "cache"))
    recipe = rc.resolve("scan", plugins.find_recipe, "digits", OFFLINE)
    calls: dict[str, list[int]] = {"stage": [], "epochs": []}
    inside: list[str] = []
    forward = backbones.MLP.forward

    def counted(self, x):
        for where in inside:
            calls[where].append(x.shape[0])
        return forward(self, x)

    def within(where, method):
        def wrapped(self, *args, **kwargs):
            inside.append(where)
            try:
                return method(self, *args, **kwargs)
            finally:
                inside.remove(where)
        return wrapped

    monkeypatch.setattr(backbones.MLP, "forward", counted)
    monkeypatch.setattr(StageTrainer, "run", within("stage", StageTrainer.run))
    monkeypatch.setattr(StageTrainer, "_epoch", within("epochs", StageTrainer._epoch))
    final = train(recipe, tmp_path / "run", plugins, log=lambda _: None, progress=False)
    assert sum(calls["stage"]) == 1797  # one extraction, at stage start (neighbour mining)
    assert calls["epochs"] == []  # 30 epochs of training and evaluation never ran it
    assert_above_chance(final, evaluations)


def test_an_unfrozen_backbone_is_refused(plugins, tmp_path):
    recipe = rc.resolve("scan", plugins.find_recipe, "digits", [*OFFLINE, "train.freeze=[]"])
    with pytest.raises(Exception, match="freeze"):
        train(recipe, tmp_path / "run", plugins, log=lambda _: None, progress=False)


def test_a_budgeted_run_probes_with_its_neighbours_mined(plugins, tmp_path, monkeypatch):
    """The budget's probe starts the stage as training does, so the neighbour state is filled
    before the probe's steps read it (an own-folder run gets a budget from the auto preset)."""
    monkeypatch.setenv("DEEPCLUST_CACHE_DIR", str(tmp_path / "cache"))
    recipe = rc.resolve("scan", plugins.find_recipe, "digits",
                        [*OFFLINE, "train.epochs=3", 'train.budget="20s"'])
    train(recipe, tmp_path / "run", plugins, log=lambda _: None, progress=False)
    assert (tmp_path / "run" / "final.json").exists()
