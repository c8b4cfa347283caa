"""deepclust plugin ``hadis``: hardness-aware self-distillation on top of ProPos
(specs/hadis.md). DSA and PCL are ProPos's PSA and PSL, imported from ``deepclust_propos``."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_hadis.losses": ("HSD", "hsd", "hsd_anchor_losses"),
    "deepclust_hadis.mining": ("HardPairs", "distances", "mine_hard_pairs"),
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
