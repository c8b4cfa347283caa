"""Contrastive Clustering (Li, Hu, Liu, Peng, Zhou, Peng, AAAI 2021) as a deepclust plugin.

The plugin adds CC's two heads, its cluster-level losses and the
``cc`` recipe; the instance loss is the core's NT-Xent.
"""

from __future__ import annotations

from corekit import LazyExports

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_cc.heads": ("cc_instance_head",),
    "deepclust_cc.losses": (
        "ClusterContrast", "ClusterLoss", "cc_cluster_contrast", "cc_cluster_loss",
    ),
}
_LAZY = LazyExports(__name__, _MODULES, "__version__")
__all__, __getattr__, __dir__ = _LAZY.names, _LAZY.getattr, _LAZY.dir
