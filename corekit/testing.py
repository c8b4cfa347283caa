"""Helpers for testing plugins in isolation (import from your plugin's tests).

``plugin_set(module)`` loads the core plus just your plugin module (no other installed
plugin), so a test sees exactly what your plugin registers. ``tiny_recipe`` gives a recipe
dict that trains in a second on a slice of ``digits``; ``run_tiny`` trains it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from corekit import recipe as rc
from corekit.plugins import Plugins, load_plugins


def plugin_set(*modules: ModuleType, name: str = "under_test") -> Plugins:
    """The core's components plus ``modules``, with every installed plugin switched off."""
    names = [name if len(modules) == 1 else f"{name}{i}" for i in range(len(modules))]
    saved = os.environ.get("DEEPCLUST_PLUGINS")
    os.environ["DEEPCLUST_PLUGINS"] = ",".join(names)
    try:
        return load_plugins(extra=list(zip(names, modules, strict=True)))
    finally:
        if saved is None:
            os.environ.pop("DEEPCLUST_PLUGINS")
        else:
            os.environ["DEEPCLUST_PLUGINS"] = saved


def tiny_recipe(**sections: Any) -> dict[str, Any]:
    """A one-epoch, three-step recipe on 256 digits; ``sections`` are merged over it."""
    base = {
        "name": "tiny",
        "data": {"name": "digits", "subset": 256},
        "model": {"backbone": {"type": "mlp", "hidden": 64, "out_dim": 32},
                  "heads": {"proj": {"type": "mlp_projector", "hidden": 32, "out_dim": 16}}},
        "augment": {"type": "simclr", "views": 2, "crop_scale": [0.5, 1.0]},
        "losses": {"instance": {"type": "nt_xent", "head": "proj"}},
        "clusterer": {"type": "kmeans", "every": 0, "before_training": False, "n_init": 1},
        "train": {"epochs": 1, "batch_size": 64, "steps_per_epoch": 3},
    }
    return rc.merge(base, sections)


def run_tiny(raw: dict[str, Any], out: Path, plugins: Plugins, **kwargs: Any) -> dict[str, Any]:
    """Validate ``raw`` and train it into ``out`` quietly; returns final metrics."""
    from corekit.run import train

    return train(rc.validate(raw), out, plugins, log=lambda _: None, progress=False, **kwargs)
