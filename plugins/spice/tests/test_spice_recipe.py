"""The spice recipe's paper presets against the spec's §5 tables (common and per data set)."""

from __future__ import annotations

import pytest

from corekit import recipe as rc
from corekit.plugins import Plugins
from corekit.testing import load_only

# spec §5 per data set: K, MoCo epochs, N, stage-2 epochs, r, stage-1/2 backbone, stage-3 net.
# The MoCo epochs of the stl10/cifar presets are the recipe's top level (1000).
PAPER = {
    "stl10": (10, 1000, 5000, 100, 0.90, "clusterresnet34", "wrn37_2_stl10"),
    "cifar10": (10, 1000, 5000, 30, 0.99, "resnet18_cifar", "wrn28_2"),
    "cifar20": (20, 1000, 10000, 100, 0.99, "clusterresnet34", "wrn28_8"),
    "imagenet10": (10, 5000, 5000, 100, 0.90, "resnet34", "resnet34"),
    "imagenet_dogs": (15, 3000, 8000, 100, 0.90, "resnet34", "resnet34"),
}


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_only("spice")


def stages(plugins: Plugins, preset: str) -> dict[str, rc.Stage]:
    recipe = rc.resolve("spice", plugins.find_recipe, preset, [])
    return {stage.name: stage for stage in recipe.stages}


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_paper_presets_follow_the_spec_table(plugins: Plugins, preset: str) -> None:
    k, moco_epochs, n, self_epochs, ratio, backbone, semi_net = PAPER[preset]
    moco, self_, semi = stages(plugins, preset).values()
    assert moco.train.epochs == moco_epochs
    assert moco.model.backbone.type == backbone
    assert self_.model.backbone.type == backbone
    assert semi.model.backbone.type == semi_net
    proto = self_.pseudo_labeler["proto"]
    assert proto.sample == n
    assert self_.train.epochs == self_epochs
    assert self_.pseudo_labeler["reliable"].options["ratio"] == ratio
    assert self_.state["estep"].options["n_clusters"] == 10 * k
    if preset.startswith("imagenet"):  # an image folder: K comes from the preset
        assert moco.data.n_clusters == k
    assert moco.state["queue"].options["size"] % moco.train.batch_size == 0


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_a_paper_preset_epoch_is_one_e_step_and_eight_passes(plugins: Plugins,
                                                                preset: str) -> None:
    """spec §5: M-step minibatch 128, 8 passes over the N labelled images per E-step."""
    self_ = stages(plugins, preset)["self"]
    proto = self_.pseudo_labeler["proto"]
    assert proto.every == 1
    assert self_.train.batch_size == 128
    assert self_.train.steps_per_epoch == 8 * proto.sample // 128
