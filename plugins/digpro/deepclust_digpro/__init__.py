"""deepclust plugin ``digpro``: dynamic grouping on top of ProPos (Zhang & Huang,
arXiv 2401.13581). L_base and prototype aggregation are ProPos's PSA and PSL, imported from
``deepclust_propos``."""

from __future__ import annotations

from corekit import LazyExports

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_digpro.grouping": (
        "assign_groups", "dynamic_grouping", "group_logits", "is_reset_step", "kmeans_groups",
        "update_groups",
    ),
    "deepclust_digpro.losses": ("DynamicGrouping", "check_group_width"),
}
_LAZY = LazyExports(__name__, _MODULES, "__version__")
__all__, __getattr__, __dir__ = _LAZY.names, _LAZY.getattr, _LAZY.dir
