import json
import re
import types

import attrs
import pytest
import torch
from torch import nn

from corekit import Need, hookimpl, metrics
from corekit import recipe as rc
from corekit.builder import build_component
from corekit.cli import main
from corekit.components.clusterers import ClusterResult
from corekit.composer import CompositionError
from corekit.data import load_dataset
from corekit.engine.trainer import StageTrainer
from corekit.errors import ComponentError, PluginError, RecipeError
from corekit.handoff import StageOutputs
from corekit.plugins import HOOKS, check_requirements, load_plugins
from corekit.registry import KINDS
from corekit.runner import DataCache, check_recipe, train
from corekit.testing import plugin_set
from tests.core import toy_plugin


def _module(name, **hooks):
    mod = types.ModuleType(name)
    for key, value in hooks.items():
        setattr(mod, key, value)
    return mod


def test_core_registers_through_the_hooks():
    plugins = load_plugins()
    core = plugins.plugin("core")
    assert core.status == "loaded"
    assert "nt_xent" in core.components["loss"]
    assert plugins.registry.get("loss", "nt_xent").plugin == "core"


def test_core_datasets_are_the_builtin_loaders():
    """The core registers its datasets as targets by name; each resolves to the loader of
    ``corekit.data.BUILTIN_DATASETS``, and ``Plugins.datasets()`` serves them all."""
    from corekit.data import BUILTIN_DATASETS

    loaders = load_plugins().datasets()
    assert {name: loaders[name] for name in BUILTIN_DATASETS} == BUILTIN_DATASETS
    assert "nonesuch" not in loaders


LAZY_LAB_LOSSES = """
class Fine:
    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def needs(self):
        return []

    def __call__(self, step):
        return self.scale


class NoNeeds:
    def __call__(self, step):
        return 0.0
"""


def test_lazy_targets_are_built_with_the_contract_checked(tmp_path, monkeypatch):
    """A ``"module:attr"`` target goes through the same build as a factory object: options
    checked against its signature, the result against its kind's protocol (contracts.py); one
    that cannot be imported is an error naming the plugin and the target."""
    (tmp_path / "lazy_lab_losses.py").write_text(LAZY_LAB_LOSSES)
    (tmp_path / "lazy_lab_broken.py").write_text("import surely_not_installed_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    @hookimpl
    def register_losses(register):
        register("fine", "lazy_lab_losses:Fine")
        register("no_needs", "lazy_lab_losses:NoNeeds")
        register("broken", "lazy_lab_broken:Loss")

    plugins = plugin_set(_module("lazylab", register_losses=register_losses), name="lazylab")
    assert plugins.plugin("lazylab").status == "loaded"
    assert build_component(plugins, "loss", "fine", {"scale": 2.0}, "losses.a").scale == 2.0
    with pytest.raises(RecipeError, match="losses.a.scale: expected float"):
        build_component(plugins, "loss", "fine", {"scale": "big"}, "losses.a")
    with pytest.raises(ComponentError, match=re.escape(
            "losses.b (lazylab.no_needs): this loss must provide needs()")):
        build_component(plugins, "loss", "no_needs", {}, "losses.b")
    with pytest.raises(ComponentError, match=re.escape(
            "plugin 'lazylab': loss 'broken' (target 'lazy_lab_broken:Loss') cannot be imported")):
        build_component(plugins, "loss", "broken", {}, "losses.c")


def test_broken_plugin_is_reported_not_fatal():
    def register_losses(register):
        raise RuntimeError("boom in plugin")

    broken = _module("broken", register_losses=hookimpl(register_losses))
    plugins = load_plugins(extra=[("broken", broken), ("toy", toy_plugin)])
    info = plugins.plugin("broken")
    assert info.status == "failed" and "boom in plugin" in info.error
    assert plugins.plugin("toy").status == "loaded"
    assert "broken" in plugins.failure_note()


def test_unknown_hook_name_in_plugin_is_reported():
    def register_lossez(register):
        pass

    typo = _module("typo", register_lossez=hookimpl(register_lossez))
    info = load_plugins(extra=[("typo", typo)]).plugin("typo")
    assert info.status == "failed" and "register_lossez" in info.error


def test_duplicate_name_fails_the_second_plugin_whole():
    def register_losses(register):
        register("fresh_name", lambda: None)
        register("nt_xent", lambda: None)

    dup = _module("dup", register_losses=hookimpl(register_losses))
    plugins = load_plugins(extra=[("dup", dup)])
    info = plugins.plugin("dup")
    assert info.status == "failed"
    assert "'core'" in info.error and "'dup'" in info.error
    assert not plugins.registry.has("loss", "fresh_name")  # nothing half-registered


def test_allow_and_deny_environment(monkeypatch):
    monkeypatch.setenv("DEEPCLUST_DISABLE_PLUGINS", "toy")
    assert load_plugins(extra=[("toy", toy_plugin)]).plugin("toy").status == "disabled"
    monkeypatch.delenv("DEEPCLUST_DISABLE_PLUGINS")
    monkeypatch.setenv("DEEPCLUST_PLUGINS", "other")
    assert load_plugins(extra=[("toy", toy_plugin)]).plugin("toy").status == "disabled"
    plugins = plugin_set(toy_plugin)
    assert plugins.registry.has("loss", "momentum_centre")


def test_requirements_name_the_pip_command():
    plugins = plugin_set(toy_plugin, name="toy")
    with pytest.raises(PluginError, match="pip install deepclust-plugin-hadis"):
        check_requirements(["hadis"], plugins, "r")
    with pytest.raises(PluginError, match="needs toy>=9.0"):
        object.__setattr__(plugins.plugin("toy"), "version", "0.1.0")
        check_requirements(["toy>=9.0"], plugins, "r")
    check_requirements(["toy>=0.1"], plugins, "r")


def test_plugins_json(capsys):
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    core = next(p for p in listing if p["name"] == "core")
    assert core["status"] == "loaded" and "kmeans" in core["components"]["clusterer"]


# -- one usable component through every hook -----------------------------------------------

class EveryBackbone(nn.Module):
    """Flatten, then one linear layer."""

    def __init__(self, in_channels: int, image_size: int, out_dim: int = 16) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.layer = nn.Linear(in_channels * image_size * image_size, out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layer(images.flatten(1))


class EveryHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int = 8) -> None:
        super().__init__()
        self.out_dim, self.produces = out_dim, "embedding"
        self.layer = nn.Linear(in_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layer(features)


class EveryView(nn.Module):
    """Normalised image plus a little noise: one view."""

    def __init__(self, size: int, channels: int, mean=None, std=None, noise: float = 0.05):
        super().__init__()
        self.size, self.noise = size, noise
        self.mean = torch.tensor(mean or [0.0] * channels).view(1, -1, 1, 1)
        self.std = torch.tensor(std or [1.0] * channels).view(1, -1, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert images.shape[-1] == self.size
        return (images - self.mean) / self.std + self.noise * torch.randn_like(images)


class EveryLoss:
    """Agreement of two views' projections; reads a plugin need kind and a plugin state."""

    def needs(self) -> list[Need]:
        return [Need.output("proj"), Need.views(2), Need("every_kind"),
                Need.state("seen", "every_state")]

    def __call__(self, step) -> torch.Tensor:
        assert step.state("seen").visits.shape == (64,)
        return (step.output("proj", 0) - step.output("proj", 1)).pow(2).mean()


class EveryLabeler:
    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def needs(self) -> list[Need]:
        return [Need.output("proj")]

    def __call__(self, step):
        z = step.output("proj", 0).softmax(dim=1)
        return z.argmax(dim=1), z.max(dim=1).values >= self.threshold


class EveryClusterer:
    """Cluster ``i mod K`` for image ``i``; counts its fits."""

    def __init__(self, n_clusters: int) -> None:
        self.n_clusters, self.fits = n_clusters, 0

    def fit(self, features: torch.Tensor) -> ClusterResult:
        self.fits += 1
        labels = torch.arange(len(features)) % self.n_clusters
        return ClusterResult(labels, torch.zeros(self.n_clusters, features.shape[1]), 0.0)


class EveryState(nn.Module):
    """How often each image was trained on, counted after every optimizer step."""

    def __init__(self, n_images: int) -> None:
        super().__init__()
        self.register_buffer("visits", torch.zeros(n_images, dtype=torch.long))

    def after_optimizer_step(self, step) -> None:
        self.visits[step.indices] += 1


@attrs.frozen(kw_only=True)
class EverySchedule:
    steps_per_epoch: int
    epochs: int
    scale: float = 1.0

    def factor(self, step: int) -> float:
        return self.scale


class EverySGD(torch.optim.SGD):
    pass


def every_optimizer(params, lr: float, weight_decay: float = 0.0) -> EverySGD:
    return EverySGD(params, lr=lr, weight_decay=weight_decay)


class EverySampler:
    """The first ``count`` images in dataset order."""

    def order(self, n, count, generator, states) -> torch.Tensor:
        return torch.arange(count) % n


def every_kind(need: Need, ctx) -> str | None:
    return None if ctx.stage.data.subset else "needs every_kind: set data.subset"


def every_data(root):
    """A dataset a plugin adds: scikit-learn's digits, under another name."""
    if root is not None:
        raise ValueError("every_data takes no path")
    return load_dataset("digits")


EVERY_RECIPE = """
name = "every_recipe"
[data]
name = "every_data"
subset = 64
[model.backbone]
type = "every.every_backbone"
[model.heads.proj]
type = "every_head"
input = "backbone"
[augment]
type = "every_view"
views = 2
[losses.agree]
type = "every_loss"
[state.seen]
type = "every_state"
[clusterer]
type = "every_clusterer"
features = "proj"
every = 0
before_training = false
[train]
epochs = 1
batch_size = 16
steps_per_epoch = 2
device = "cpu"
checkpoint_every = 0
optimizer = { type = "every_optimizer", lr = 0.1 }
schedule = { type = "every_schedule", scale = 0.5 }
sampler = { type = "every_sampler" }
[eval]
assign = "clusterer"
"""


def test_every_hook_registers_a_usable_component(tmp_path):
    """One plugin registers one component through each of the thirteen hooks; each is found in
    the registry under its kind, and a recipe registered through the plugin trains with all of
    them: the need kind is checked, the sampler orders the epoch, the state counts the visits,
    the schedule scales the lr of the plugin's optimizer, the clusterer assigns."""
    path = tmp_path / "every_recipe.toml"
    path.write_text(EVERY_RECIPE)

    @hookimpl
    def register_backbones(register):
        register("every_backbone", EveryBackbone)

    @hookimpl
    def register_augmentations(register):
        register("every_view", EveryView)

    @hookimpl
    def register_heads(register):
        register("every_head", EveryHead)

    @hookimpl
    def register_losses(register):
        register("every_loss", EveryLoss)

    @hookimpl
    def register_pseudo_labelers(register):
        register("every_labeler", EveryLabeler)

    @hookimpl
    def register_clusterers(register):
        register("every_clusterer", EveryClusterer)

    @hookimpl
    def register_state_types(register):
        register("every_state", EveryState)

    @hookimpl
    def register_schedules(register):
        register("every_schedule", EverySchedule)

    @hookimpl
    def register_optimizers(register):
        register("every_optimizer", every_optimizer)

    @hookimpl
    def register_samplers(register):
        register("every_sampler", EverySampler)

    @hookimpl
    def register_need_kinds(register):
        register("every_kind", every_kind)

    @hookimpl
    def register_datasets(register):
        register("every_data", every_data)

    @hookimpl
    def register_recipes(register):
        register("every_recipe", path)

    impls = [register_backbones, register_augmentations, register_heads, register_losses,
             register_pseudo_labelers, register_clusterers, register_state_types,
             register_schedules, register_optimizers, register_samplers, register_need_kinds,
             register_datasets, register_recipes]
    assert sorted(f.__name__ for f in impls) == sorted(HOOKS.values())
    plugins = plugin_set(_module("every", **{f.__name__: f for f in impls}), name="every")
    info = plugins.plugin("every")
    assert info.status == "loaded", info.error
    factories = {"backbone": EveryBackbone, "augmentation": EveryView, "head": EveryHead,
                 "loss": EveryLoss, "pseudo_labeler": EveryLabeler,
                 "clusterer": EveryClusterer, "state": EveryState, "schedule": EverySchedule,
                 "optimizer": every_optimizer, "sampler": EverySampler, "need": every_kind,
                 "dataset": every_data, "recipe": path}
    assert set(factories) == set(KINDS)
    for kind, obj in factories.items():
        name = "every_view" if kind == "augmentation" else f"every_{kind}"
        name = {"need": "every_kind", "pseudo_labeler": "every_labeler",
                "dataset": "every_data"}.get(kind, name)
        entry = plugins.registry.get(kind, f"every.{name}")
        assert entry.obj is obj and entry.plugin == "every"
        assert info.components[kind] == [name]

    recipe = rc.resolve("every_recipe", plugins.find_recipe)
    assert plugins.find_recipe("every_recipe") == path
    (composed,) = check_recipe(recipe, plugins, DataCache(torch.device("cpu"), plugins.datasets()))
    assert isinstance(composed.optimizer, EverySGD)
    assert isinstance(composed.schedule, EverySchedule) and composed.schedule.factor(1) == 0.5
    assert isinstance(composed.sampler, EverySampler)
    assert isinstance(composed.clusterer, EveryClusterer)
    assert isinstance(composed.state["seen"], EveryState)
    assert isinstance(composed.views[0], EveryView)
    assert isinstance(composed.model.online.part("backbone"), EveryBackbone)
    assert isinstance(composed.model.online.part("proj"), EveryHead)
    assert isinstance(composed.losses[0].fn, EveryLoss)

    raw = rc.resolve_raw("every_recipe", plugins.find_recipe)
    del raw["data"]["subset"]
    without_subset = rc.validate(raw)
    with pytest.raises(CompositionError, match="needs every_kind: set data.subset"):
        check_recipe(without_subset, plugins, DataCache(torch.device("cpu"), plugins.datasets()))

    out = tmp_path / "run"
    final = train(recipe, out, plugins, log=lambda _: None, progress=False)
    visits = StageOutputs.load(out / "stages" / "main").state["seen"]["visits"]
    assert visits[:32].tolist() == [1] * 32 and visits[32:].sum() == 0  # sampler + state
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["lr"] == pytest.approx(0.1 * 0.5)  # schedule x optimizer's base lr
    subset = load_dataset("digits").subset(64, 0)
    assert final["nmi"] == pytest.approx(metrics.nmi(subset.labels, torch.arange(64) % 10))

    trainer = StageTrainer(composed, tmp_path / "probe", torch.device("cpu"), None, 0,
                           lambda _: None, progress=False)
    images = composed.train_set.batch(torch.arange(8))
    step = trainer.make_step(torch.arange(8), trainer.views(images), 0)
    labeler = build_component(plugins, "pseudo_labeler", "every_labeler", {"threshold": 0.0},
                              "test")
    labels, mask = labeler(step)
    assert labels.shape == (8,) and mask.all()
    assert torch.equal(labels, step.output("proj", 0).argmax(dim=1))


def test_plugin_set_with_several_modules_loads_them_all():
    other = _module("other", register_clusterers=hookimpl(
        lambda register: register("other_kmeans", lambda n_clusters: None)))
    plugins = plugin_set(toy_plugin, other)
    assert plugins.registry.has("loss", "momentum_centre")
    assert plugins.registry.has("clusterer", "other_kmeans")


def test_a_factory_error_that_is_not_an_allocation_stays_itself():
    """Only a failed allocation becomes "lower the sizes" (test_reliability_inputs covers it);
    a factory's own RuntimeError (a plugin bug) is not dressed up as one."""
    @hookimpl
    def register_losses(register):
        def buggy():
            raise RuntimeError("index out of range in the plugin")
        register("buggy", buggy)

    plugins = plugin_set(_module("bugs", register_losses=register_losses), name="bugs")
    with pytest.raises(RuntimeError, match="index out of range in the plugin"):
        build_component(plugins, "loss", "buggy", {}, "losses.a")
