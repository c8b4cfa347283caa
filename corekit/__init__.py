"""deepclust core: registry, recipes, composer and the generic EM training engine.

What this module exports is the public API for plugins; plugins import nothing else. Names are
imported on first use (PEP 562), so ``import corekit`` (and ``deepclust --help``) does not pull
in torch, kornia or scikit-learn until a component needs them.
"""

from __future__ import annotations

from corekit.lazy import LazyExports

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "corekit.components.augment": ("RandomGeometry", "ResizedCrop", "ViewPipeline", "colour_ops"),
    "corekit.components.color_jitter": ("JitterFactors", "RandomColorJitter"),
    "corekit.components.clusterers": ("ClusterResult",),
    "corekit.components.heads": (
        "ClusterHead", "L2Normalize", "LinearL2", "MLPProjector", "Predictor"
    ),
    "corekit.components.losses": (
        "BatchMarginalEntropy", "NTXent", "marginal_entropy_gap", "nt_xent"
    ),
    "corekit.data": ("BUILTIN_DATASETS", "DataError", "ImageSet", "load_dataset"),
    "corekit.distributed": ("all_reduce", "gather"),
    "corekit.errors": (
        "ComponentError", "PluginError", "RecipeError", "TrainingError", "UserError"
    ),
    "corekit.hookspecs": ("hookimpl",),
    "corekit.lazy": ("LazyExports",),
    "corekit.lifecycle": ("HOOKS", "Lifecycle", "StageContext"),
    "corekit.needs": ("Need", "NeedContext", "OutputKind"),
    "corekit.registry": ("RegisterFn", "register_recipe_dir"),
    "corekit.state": ("Branch", "EMA", "MemoryBank", "PseudoLabels", "Queue", "State"),
    "corekit.step": ("Model", "Step"),
}
_LAZY = LazyExports(__name__, _MODULES, "__version__")
__all__, __getattr__, __dir__ = _LAZY.names, _LAZY.getattr, _LAZY.dir
