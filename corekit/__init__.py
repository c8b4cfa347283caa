"""deepclust core: registry, recipes, composer and the generic EM training engine.

What this module exports is the public API for plugins; plugins import nothing else. Names are
imported on first use (PEP 562), so ``import corekit`` (and ``deepclust --help``) does not pull
in torch, kornia or scikit-learn until a component needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "corekit.components.augment": ("ViewPipeline",),
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
    "corekit.lifecycle": ("HOOKS", "Lifecycle", "StageContext"),
    "corekit.needs": ("Need", "NeedContext", "OutputKind"),
    "corekit.registry": ("RegisterFn", "register_recipe_dir"),
    "corekit.state": ("Branch", "EMA", "MemoryBank", "PseudoLabels", "Queue", "State"),
    "corekit.step": ("Model", "Step"),
}
_EXPORTS: dict[str, str] = {name: module for module, names in _MODULES.items()
                             for name in names}
__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'corekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
