"""deepclust core: registry, recipes, composer and the generic EM training engine.

What this module exports is the public API for plugins; plugins import nothing else.
"""

from corekit.components.clusterers import ClusterResult
from corekit.components.heads import ClusterHead, L2Normalize, LinearL2, MLPProjector, Predictor
from corekit.components.losses import (
    BatchMarginalEntropy,
    NTXent,
    marginal_entropy_gap,
    nt_xent,
)
from corekit.data import BUILTIN_DATASETS, DataError, ImageSet, load_dataset
from corekit.distributed import all_reduce, gather
from corekit.errors import ComponentError, PluginError, RecipeError, TrainingError, UserError
from corekit.hookspecs import hookimpl
from corekit.lifecycle import HOOKS, Lifecycle, StageContext
from corekit.needs import Need, NeedContext, OutputKind
from corekit.registry import RegisterFn, register_recipe_dir
from corekit.state import EMA, Branch, MemoryBank, PseudoLabels, Queue, State
from corekit.step import Model, Step

__version__ = "0.1.0"
__all__ = [
    "BUILTIN_DATASETS", "BatchMarginalEntropy", "Branch", "ClusterHead", "ClusterResult",
    "ComponentError", "DataError", "EMA", "HOOKS", "ImageSet", "L2Normalize", "Lifecycle",
    "LinearL2", "MLPProjector", "MemoryBank", "Model", "NTXent", "Need", "NeedContext",
    "OutputKind", "PluginError", "Predictor", "PseudoLabels", "Queue", "RecipeError", "RegisterFn",
    "StageContext", "State", "Step", "TrainingError", "UserError", "__version__", "all_reduce",
    "gather", "hookimpl", "load_dataset", "marginal_entropy_gap", "nt_xent", "register_recipe_dir",
]
