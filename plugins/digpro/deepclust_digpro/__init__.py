"""deepclust plugin ``digpro``: dynamic grouping on top of ProPos (specs/digpro.md). L_base and
prototype aggregation are ProPos's PSA and PSL, imported from ``deepclust_propos``."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_digpro.grouping": (
        "assign_groups", "dynamic_grouping", "group_logits", "is_reset_step", "kmeans_groups",
        "update_groups",
    ),
    "deepclust_digpro.losses": ("DynamicGrouping", "check_group_width"),
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
