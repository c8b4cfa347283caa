"""deepclust plugin ``hadis``: hardness-aware self-distillation on top of ProPos
(specs/hadis.md). DSA and PCL are ProPos's PSA and PSL, imported from ``deepclust_propos``."""

from deepclust_hadis.losses import HSD, hsd, hsd_anchor_losses
from deepclust_hadis.mining import HardPairs, distances, mine_hard_pairs

__version__ = "0.1.0"
__all__ = ["HSD", "HardPairs", "__version__", "distances", "hsd", "hsd_anchor_losses",
           "mine_hard_pairs"]
