"""The core's own components, registered through the same hooks as any plugin.

Each factory is registered as a ``"module:attr"`` target, imported when it is first built or
described: loading the built-ins imports neither torch nor kornia nor timm.
"""

from __future__ import annotations

from pathlib import Path

from corekit import needs
from corekit.hookspecs import hookimpl
from corekit.registry import RegisterFn, register_recipe_dir

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_backbones(register: RegisterFn) -> None:
    register("resnet18_cifar", "corekit.components.backbones:resnet18_cifar",
             aliases=("bigresnet18",))
    register("resnet18", "corekit.components.backbones:resnet18")
    register("resnet34", "corekit.components.backbones:resnet34")
    register("resnet34_cifar", "corekit.components.backbones:resnet34_cifar")
    register("small_cnn", "corekit.components.backbones:small_cnn")
    register("mlp", "corekit.components.backbones:mlp")
    register("timm:", "corekit.components.backbones:timm_backbone")
    register("torchvision:", "corekit.components.backbones:torchvision_backbone")


@hookimpl
def register_augmentations(register: RegisterFn) -> None:
    register("simclr", "corekit.components.augment:simclr")
    register("byol", "corekit.components.augment:byol")
    register("moco_v2", "corekit.components.augment:moco_v2")
    register("weak", "corekit.components.augment:weak")
    register("strong", "corekit.components.augment:strong", aliases=("strong_randaugment",))
    register("identity", "corekit.components.augment:identity")


@hookimpl
def register_heads(register: RegisterFn) -> None:
    register("mlp_projector", "corekit.components.heads:MLPProjector")
    register("predictor", "corekit.components.heads:Predictor")
    register("cluster_head", "corekit.components.heads:ClusterHead")
    register("stacked_cluster_head", "corekit.components.heads:StackedClusterHead")
    register("linear_l2", "corekit.components.heads:LinearL2")


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("nt_xent", "corekit.components.losses:NTXent")
    register("batch_marginal_entropy", "corekit.components.losses:BatchMarginalEntropy")
    register("cross_entropy", "corekit.components.losses:TargetCrossEntropy")


@hookimpl
def register_pseudo_labelers(register: RegisterFn) -> None:
    register("confidence_threshold", "corekit.components.pseudo_labelers:ConfidenceThreshold")
    register("cluster", "corekit.components.dataset_labelers:cluster_labels")


@hookimpl
def register_clusterers(register: RegisterFn) -> None:
    register("kmeans", "corekit.components.clusterers:KMeans")
    register("spherical_kmeans", "corekit.components.clusterers:SphericalKMeans")
    register("spectral", "corekit.components.spectral:SpectralClustering")


@hookimpl
def register_state_types(register: RegisterFn) -> None:
    register("ema", "corekit.state.ema:EMA")
    register("memory_bank", "corekit.state.memory_bank:MemoryBank")
    register("queue", "corekit.state.queue:Queue")
    register("pseudo_labels", "corekit.state.pseudo_labels:PseudoLabels")
    register("selection", "corekit.state.selection:Selection")
    register("targets", "corekit.state.targets:Targets")


@hookimpl
def register_schedules(register: RegisterFn) -> None:
    register("constant", "corekit.components.schedules:Constant")
    register("cosine", "corekit.components.schedules:Cosine")
    register("multistep", "corekit.components.schedules:MultiStep")
    register("fixmatch_cosine", "corekit.components.schedules:FixMatchCosine")


@hookimpl
def register_optimizers(register: RegisterFn) -> None:
    register("sgd", "corekit.components.optimizers:sgd")
    register("adam", "corekit.components.optimizers:adam")
    register("adamw", "corekit.components.optimizers:adamw")
    register("lars", "corekit.components.optimizers:LARS")


@hookimpl
def register_samplers(register: RegisterFn) -> None:
    register("shuffle", "corekit.components.samplers:Shuffle")
    register("cluster_balanced", "corekit.components.samplers:ClusterBalanced")


@hookimpl
def register_need_kinds(register: RegisterFn) -> None:
    for kind, check in needs.CORE_NEED_KINDS.items():  # corekit.needs imports no torch
        register(kind, check)


@hookimpl
def register_datasets(register: RegisterFn) -> None:
    """The loaders of ``corekit.data.BUILTIN_DATASETS``, under the same names."""
    register("digits", "corekit.data:_digits")
    register("mnist", "corekit.data:_mnist")
    register("mnist-train", "corekit.data:_mnist_train")
    register("mnist-test", "corekit.data:_mnist_test")
    register("cifar10", "corekit.data.sources:load_cifar10")
    register("cifar20", "corekit.data.sources:load_cifar20")
    register("stl10", "corekit.data.sources:load_stl10")
    register("imagefolder", "corekit.data:_imagefolder")


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
