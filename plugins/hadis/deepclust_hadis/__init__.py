"""deepclust plugin ``hadis``: hardness-aware self-distillation on top of ProPos
(Zhang & Huang, arXiv 2401.14038). DSA and PCL are ProPos's PSA and PSL, imported from
``deepclust_propos``."""

from __future__ import annotations

from corekit import LazyExports

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_hadis.losses": ("HSD", "hsd", "hsd_anchor_losses"),
    "deepclust_hadis.mining": ("HardPairs", "distances", "mine_hard_pairs"),
}
_LAZY = LazyExports(__name__, _MODULES, "__version__")
__all__, __getattr__, __dir__ = _LAZY.names, _LAZY.getattr, _LAZY.dir
