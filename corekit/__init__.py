"""deepclust core: registry, recipes, composer and the generic EM training engine.

The public API for plugins is what this module exports.
"""

from corekit.errors import ComponentError, PluginError, RecipeError, TrainingError, UserError
from corekit.hookspecs import hookimpl
from corekit.step import Need, Step

__version__ = "0.1.0"
__all__ = ["ComponentError", "Need", "PluginError", "RecipeError", "Step", "TrainingError",
           "UserError", "__version__", "hookimpl"]
