"""IDFD (Tao, Takagi, Nakata, ICLR 2021) and cIDFD (Oshima, Takagi, Nakata, 2024) as a
deepclust plugin.

Written from the papers' equations (arXiv 2106.00131, arXiv 2408.04891), not from the IDFD
code (whose licence forbids reuse). The plugin adds IDFD's instance discrimination and feature
decorrelation, cIDFD's contrastive instance discrimination, IDFD's augmentation and lr steps,
the Stripe-MNIST / Stripes datasets and the ``idfd`` / ``cidfd`` recipes; memory banks, heads,
backbones, k-means and the two-stage hand-off are the core's.
"""

from __future__ import annotations

from corekit import LazyExports

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_cidfd.augment": ("idfd_aug", "idfd_ops"),
    "deepclust_cidfd.data": (
        "FAMILIES", "StripeParams", "StripeSet", "draw_stripes", "load_stripe_mnist",
        "load_stripes", "render_stripes", "stripe_mnist_images", "stripe_rng", "stripes_images",
    ),
    "deepclust_cidfd.losses": (
        "ContrastiveInstanceDiscrimination", "FeatureDecorrelation", "InstanceDiscrimination",
        "contrastive_instance_discrimination", "feature_decorrelation", "instance_discrimination",
    ),
    "deepclust_cidfd.schedules": ("FractionalMultiStep",),
}
_LAZY = LazyExports(__name__, _MODULES, "__version__")
__all__, __getattr__, __dir__ = _LAZY.names, _LAZY.getattr, _LAZY.dir
