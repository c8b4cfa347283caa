"""SCAN: Learning to Classify Images without Labels (Van Gansbeke, Vandenhende, Georgoulis,
Proesmans, Van Gool, ECCV 2020, arXiv 2005.12320) as a deepclust plugin.

The plugin adds SCAN's neighbour mining (a state type), its clustering loss (Eq. 2) and the
``scan`` recipe: a cluster head trained on the cached features of a frozen pretrained backbone.
"""

from __future__ import annotations

from corekit import LazyExports

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_scan.losses": ("SCANLoss", "scan_loss"),
    "deepclust_scan.neighbours": ("Neighbours", "mine_neighbours"),
}
_LAZY = LazyExports(__name__, _MODULES, "__version__")
__all__, __getattr__, __dir__ = _LAZY.names, _LAZY.getattr, _LAZY.dir
