"""deepclust plugin ``digpro``: dynamic grouping on top of ProPos (specs/digpro.md). L_base and
prototype aggregation are ProPos's PSA and PSL, imported from ``deepclust_propos``."""

from deepclust_digpro.grouping import (
    assign_groups,
    dynamic_grouping,
    group_logits,
    is_reset_step,
    kmeans_groups,
    update_groups,
)
from deepclust_digpro.losses import DynamicGrouping, check_group_width

__version__ = "0.1.0"
__all__ = [
    "DynamicGrouping", "__version__", "assign_groups", "check_group_width", "dynamic_grouping",
    "group_logits", "is_reset_step", "kmeans_groups", "update_groups",
]
