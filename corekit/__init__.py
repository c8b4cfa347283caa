"""deepclust core: registry, recipes, composer and the generic EM training engine.

What this module exports is the public API for plugins; plugins import nothing else.
"""

from corekit.components.heads import ClusterHead, L2Normalize, LinearL2, MLPProjector, Predictor
from corekit.components.losses import (
    BatchMarginalEntropy,
    NTXent,
    marginal_entropy_gap,
    nt_xent,
)
from corekit.errors import ComponentError, PluginError, RecipeError, TrainingError, UserError
from corekit.hookspecs import hookimpl
from corekit.registry import RegisterFn
from corekit.step import Need, Step

__version__ = "0.1.0"
__all__ = [
    "BatchMarginalEntropy", "ClusterHead", "ComponentError", "L2Normalize", "LinearL2",
    "MLPProjector", "NTXent", "Need", "PluginError", "Predictor", "RecipeError", "RegisterFn",
    "Step", "TrainingError", "UserError", "__version__", "hookimpl", "marginal_entropy_gap",
    "nt_xent",
]
