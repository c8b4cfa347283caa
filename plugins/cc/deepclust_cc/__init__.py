"""Contrastive Clustering (Li, Hu, Liu, Peng, Zhou, Peng, AAAI 2021) as a deepclust plugin.

Spec: ``shared/specs/cc.md``. The plugin adds CC's two heads, its cluster-level losses and the
``cc`` recipe; the instance loss is the core's NT-Xent.
"""

from deepclust_cc.heads import cc_instance_head
from deepclust_cc.losses import ClusterContrast, ClusterLoss, cc_cluster_contrast, cc_cluster_loss

__version__ = "0.1.0"
__all__ = [
    "ClusterContrast", "ClusterLoss", "__version__", "cc_cluster_contrast", "cc_cluster_loss",
    "cc_instance_head",
]
