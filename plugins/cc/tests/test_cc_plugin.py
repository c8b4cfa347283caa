"""The cc plugin as installed: entry-point registration, heads (cc.md §9.14-9.15), the loss
callables, every recipe preset, and a tiny end-to-end run on digits."""

from __future__ import annotations

import json

import pytest
import torch
from deepclust_cc.heads import cc_instance_head
from deepclust_cc.losses import ClusterContrast, ClusterLoss, cc_cluster_contrast, cc_cluster_loss

from corekit import ClusterHead, MLPProjector, Need, NTXent
from corekit import recipe as rc
from corekit.composer import compose
from corekit.data import ImageSet
from corekit.plugins import load_plugins
from corekit.runner import train
from corekit.testing import FakeStep, assert_above_chance, record_evaluations

PRESETS = ["cifar10", "cifar20", "stl10", "imagenet10", "imagenet_dogs", "tiny_imagenet",
           "digits", "mnist"]


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- registration ---------------------------------------------------------------------------

def test_plugin_loads_through_its_entry_point(plugins):
    info = plugins.plugin("cc")
    assert info is not None and info.status == "loaded", info
    assert info.distribution == "deepclust-plugin-cc"
    assert info.module == "deepclust_cc.plugin"
    assert info.components == {
        "head": ["cc_instance_head", "cc_cluster_head"],
        "loss": ["cc_instance_loss", "cc_cluster_contrast", "cc_cluster_loss", "cc_cluster"],
        "recipe": ["cc"],
    }


def test_reused_core_components_are_the_same_objects(plugins):
    registry = plugins.registry
    assert registry.get("loss", "cc_instance_loss").obj is NTXent
    assert registry.get("loss", "cc_instance_loss").obj is registry.get("loss", "nt_xent").obj
    assert registry.get("head", "cc_cluster_head").obj is ClusterHead
    assert registry.get("loss", "cc_cluster").obj is ClusterLoss
    assert registry.get("loss", "cc.cc_cluster_contrast").obj is ClusterContrast


# --- heads (cc.md §2.3, §2.4, §9.14, §9.15) ---------------------------------------------------

def test_instance_head_shape_norm_and_params():
    head = cc_instance_head(512)
    assert isinstance(head, MLPProjector)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules())
    assert n_params(head) == 328_320
    assert n_params(cc_instance_head(2048)) == 4_458_624
    z = head(torch.randn(2, 512))
    assert z.shape == (2, 128) and head.out_dim == 128
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))


@pytest.mark.parametrize(("m", "params"), [(10, 267_786), (15, 270_351), (20, 272_916),
                                           (200, 365_256)])
def test_cluster_head_params(m, params):
    assert n_params(ClusterHead(512, m)) == params


def test_cluster_head_probabilities_and_argmax():
    head = ClusterHead(512, 10)
    h = torch.randn(2, 512)
    probs = head(h)
    assert probs.shape == (2, 10) and head.out_dim == 10
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    head.output = "logits"
    assert torch.equal(head(h).argmax(dim=1), probs.argmax(dim=1))


# --- loss callables -------------------------------------------------------------------------

@pytest.mark.parametrize(("cls", "fn"), [(ClusterContrast, cc_cluster_contrast),
                                         (ClusterLoss, cc_cluster_loss)])
def test_loss_callables_read_two_views_of_their_head(cls, fn):
    gen = torch.Generator().manual_seed(0)
    ya, yb = (torch.randn(8, 4, generator=gen).softmax(dim=1) for _ in range(2))
    loss = cls(head="clu", temperature=0.7)
    assert loss.needs() == [Need.output("clu", reads="probs"), Need.views(2)]
    step = FakeStep({("online", "clu", 0): ya, ("online", "clu", 1): yb})
    torch.testing.assert_close(loss(step), fn(ya, yb, 0.7))
    assert cls().head == "cluster" and cls().temperature == 1.0


# --- recipes --------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_resolves(plugins, preset):
    recipe = rc.resolve("cc", plugins.find_recipe, data=preset)
    (stage,) = recipe.stages
    assert recipe.requires == ["cc"]
    assert stage.eval.assign == "head:cluster"
    assert stage.losses["instance"].options["temperature"] == 0.5
    assert stage.losses["cluster"].options["temperature"] == 1.0
    assert {spec.type for spec in stage.losses.values()} == {
        "cc_instance_loss", "cc_cluster_contrast", "batch_marginal_entropy"}
    assert stage.train.device == "auto"


@pytest.mark.parametrize(("preset", "strength", "blur"), [
    ("cifar10", 0.5, False), ("cifar20", 0.5, False), ("stl10", 1.0, False),
    ("imagenet10", 1.0, True), ("imagenet_dogs", 1.0, True), ("tiny_imagenet", 0.5, False)])
def test_paper_presets_follow_the_paper(plugins, preset, strength, blur):
    (stage,) = rc.resolve("cc", plugins.find_recipe, data=preset).stages
    assert stage.model.backbone.type == "resnet34"
    assert stage.augment.size == 224 and not stage.augment.normalize
    assert stage.augment.options["strength"] == strength
    assert stage.augment.options["blur"] is blur
    assert (stage.train.epochs, stage.train.batch_size) == (1000, 256)
    opt = stage.train.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ("adam", 3e-4, 0.0)
    assert stage.data.n_clusters is None  # M = number of classes


def synthetic(channels: int, size: int, classes: int) -> ImageSet:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, channels, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.arange(16) % classes
    return ImageSet("synthetic", images, labels, classes, (0.5,) * channels, (0.25,) * channels)


@pytest.mark.parametrize(("preset", "channels", "size", "classes"), [
    ("cifar10", 3, 32, 10), ("cifar20", 3, 32, 20), ("stl10", 3, 96, 10),
    ("imagenet10", 3, 64, 10), ("imagenet_dogs", 3, 64, 15), ("tiny_imagenet", 3, 64, 200),
    ("digits", 1, 8, 10), ("mnist", 1, 28, 10)])
def test_every_preset_composes(plugins, preset, channels, size, classes):
    """Every component option of every preset is accepted by its factory."""
    (stage,) = rc.resolve("cc", plugins.find_recipe, data=preset).stages
    composed = compose(plugins, stage, lambda name: synthetic(channels, size, classes),
                       torch.device("cpu"))
    assert composed.n_clusters == classes
    assert composed.model.online.out_dim("cluster") == classes
    assert composed.model.online.out_dim("instance") == stage.model.heads["instance"].options[
        "out_dim"]


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list:
    return record_evaluations(monkeypatch)


def test_tiny_training_run_on_digits(plugins, tmp_path, evaluations):
    recipe = rc.resolve("cc", plugins.find_recipe, data="digits",
                        overrides=["train.epochs=1", "train.steps_per_epoch=6"])
    final = train(recipe, tmp_path, plugins, log=lambda line: None, progress=False)
    written = json.loads((tmp_path / "final.json").read_text())
    for key in ("nmi", "acc", "ari"):
        assert written[key] == final[key]
    assert_above_chance(written, evaluations)
    assert written["recipe"] == "cc"
