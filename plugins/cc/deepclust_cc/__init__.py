"""Contrastive Clustering (Li, Hu, Liu, Peng, Zhou, Peng, AAAI 2021) as a deepclust plugin.

Spec: ``shared/specs/cc.md``. The plugin adds CC's two heads, its cluster-level losses and the
``cc`` recipe; the instance loss is the core's NT-Xent.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_cc.heads": ("cc_instance_head",),
    "deepclust_cc.losses": (
        "ClusterContrast", "ClusterLoss", "cc_cluster_contrast", "cc_cluster_loss",
    ),
}
_EXPORTS: dict[str, str] = {name: module for module, names in _MODULES.items()
                             for name in names}
__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    """Import an exported name on first use (PEP 562): loading the plugin imports no torch."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
