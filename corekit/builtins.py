"""The core's own components, registered through the same hooks as any plugin."""

from __future__ import annotations

from pathlib import Path

from corekit import needs, state
from corekit.components import (
    augment,
    backbones,
    clusterers,
    heads,
    losses,
    optimizers,
    pseudo_labelers,
    samplers,
    schedules,
)
from corekit.data import BUILTIN_DATASETS
from corekit.hookspecs import hookimpl
from corekit.registry import RegisterFn, register_recipe_dir

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_backbones(register: RegisterFn) -> None:
    register("resnet18_cifar", backbones.resnet18_cifar, aliases=("bigresnet18",))
    register("resnet18", backbones.resnet18)
    register("resnet34", backbones.resnet34)
    register("resnet34_cifar", backbones.resnet34_cifar)
    register("small_cnn", backbones.small_cnn)
    register("mlp", backbones.mlp)
    register("timm:", backbones.timm_backbone)


@hookimpl
def register_augmentations(register: RegisterFn) -> None:
    register("simclr", augment.simclr)
    register("byol", augment.byol)
    register("moco_v2", augment.moco_v2)
    register("weak", augment.weak)
    register("strong", augment.strong, aliases=("strong_randaugment",))
    register("identity", augment.identity)


@hookimpl
def register_heads(register: RegisterFn) -> None:
    register("mlp_projector", heads.MLPProjector)
    register("predictor", heads.Predictor)
    register("cluster_head", heads.ClusterHead)
    register("linear_l2", heads.LinearL2)


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("nt_xent", losses.NTXent)
    register("batch_marginal_entropy", losses.BatchMarginalEntropy)


@hookimpl
def register_pseudo_labelers(register: RegisterFn) -> None:
    register("confidence_threshold", pseudo_labelers.ConfidenceThreshold)


@hookimpl
def register_clusterers(register: RegisterFn) -> None:
    register("kmeans", clusterers.KMeans)
    register("spherical_kmeans", clusterers.SphericalKMeans)


@hookimpl
def register_state_types(register: RegisterFn) -> None:
    register("ema", state.EMA)
    register("memory_bank", state.MemoryBank)
    register("queue", state.Queue)
    register("pseudo_labels", state.PseudoLabels)


@hookimpl
def register_schedules(register: RegisterFn) -> None:
    register("constant", schedules.Constant)
    register("cosine", schedules.Cosine)
    register("multistep", schedules.MultiStep)
    register("fixmatch_cosine", schedules.FixMatchCosine)


@hookimpl
def register_optimizers(register: RegisterFn) -> None:
    register("sgd", optimizers.sgd)
    register("adam", optimizers.adam)
    register("adamw", optimizers.adamw)
    register("lars", optimizers.LARS)


@hookimpl
def register_samplers(register: RegisterFn) -> None:
    register("shuffle", samplers.Shuffle)
    register("cluster_balanced", samplers.ClusterBalanced)


@hookimpl
def register_need_kinds(register: RegisterFn) -> None:
    for kind, check in needs.CORE_NEED_KINDS.items():
        register(kind, check)


@hookimpl
def register_datasets(register: RegisterFn) -> None:
    for name, loader in BUILTIN_DATASETS.items():
        register(name, loader)


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
