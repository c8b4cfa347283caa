"""deepclust core: registry, recipes, composer and the generic EM training engine.

What this module exports is the public API for plugins; plugins import nothing else. It holds
the protocols plugin authors implement: ``Backbone``, ``Augmentation``, ``Head``, ``Loss``,
``PseudoLabeler`` (per step) or ``DatasetLabeler`` (per data set), ``Clusterer`` (returning a
``ClusterResult``), ``State``, ``Schedule`` and
``Sampler`` (the ``contract`` column of ``corekit.kinds.TABLE``), ``NeedCheck`` for a need
kind and ``Lifecycle`` for a component's hooks. Names are imported on first use (PEP 562), so
``import corekit`` (and ``deepclust --help``) does not pull in torch, kornia or scikit-learn
until a component needs them.
"""

from __future__ import annotations

from corekit.lazy import LazyExports

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "corekit.components.augment": ("RandomGeometry", "ResizedCrop", "ViewPipeline", "colour_ops"),
    "corekit.components.color_jitter": ("JitterFactors", "RandomColorJitter"),
    "corekit.components.clusterers": ("ClusterResult", "Clusterer"),
    "corekit.components.heads": (
        "ClusterHead", "L2Normalize", "LinearL2", "MLPProjector", "Predictor"
    ),
    "corekit.components.losses": (
        "BatchMarginalEntropy", "NTXent", "marginal_entropy_gap", "nt_xent"
    ),
    "corekit.components.samplers": ("Sampler",),
    "corekit.components.schedules": ("Schedule",),
    "corekit.contracts": (
        "Augmentation", "Backbone", "DatasetLabeler", "Head", "Loss", "PseudoLabeler"
    ),
    "corekit.data": ("BUILTIN_DATASETS", "DataError", "ImageSet", "load_dataset"),
    "corekit.distributed": ("all_reduce", "gather", "on_main", "shuffled_forward"),
    "corekit.errors": (
        "ComponentError", "PluginError", "RecipeError", "TrainingError", "UserError"
    ),
    "corekit.hookspecs": ("hookimpl",),
    "corekit.lazy": ("LazyExports",),
    "corekit.lifecycle": ("HOOKS", "Lifecycle", "StageContext"),
    "corekit.needs": ("Need", "NeedCheck", "NeedContext", "OutputKind"),
    "corekit.network": ("Branch", "Networks"),
    "corekit.parts": ("parse_feature",),
    "corekit.registry": ("RegisterFn", "register_recipe_dir"),
    "corekit.state": (
        "EMA", "BatchTargets", "LabelRows", "MemoryBank", "PseudoLabels", "Queue", "Selection",
        "State", "Targets", "information", "snapshot_network"
    ),
    "corekit.step": ("Step",),
}
_LAZY = LazyExports(__name__, _MODULES, "__version__")
__all__, __getattr__, __dir__ = _LAZY.names, _LAZY.getattr, _LAZY.dir
