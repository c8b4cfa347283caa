"""deepclust plugin ``propos``: ProPos's latent noise, PSA and PSL (specs/hadis.md §2.3-2.4).

HaDis (``deepclust_hadis``) and DigPro reuse these components under their own paper names.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_propos.directions": ("DIRECTIONS", "symmetric", "teacher_embedding"),
    "deepclust_propos.heads": ("LatentGaussianNoise",),
    "deepclust_propos.losses": ("PSA", "PSL", "prototypes", "psa", "psl"),
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
