"""IDFD (Tao, Takagi, Nakata, ICLR 2021) and cIDFD (Oshima, Takagi, Nakata, 2024) as a
deepclust plugin.

Spec: ``shared/specs/cidfd.md``; written from its equations, not from the IDFD code (whose
licence forbids reuse). The plugin adds IDFD's instance discrimination and feature
decorrelation, cIDFD's contrastive instance discrimination, IDFD's augmentation and lr steps,
the Stripe-MNIST / Stripes datasets and the ``idfd`` / ``cidfd`` recipes; memory banks, heads,
backbones, k-means and the two-stage hand-off are the core's.
"""

from deepclust_cidfd.augment import idfd_aug, idfd_ops
from deepclust_cidfd.data import (
    FAMILIES,
    StripeParams,
    StripeSet,
    draw_stripes,
    load_stripe_mnist,
    load_stripes,
    render_stripes,
    stripe_mnist_images,
    stripe_rng,
    stripes_images,
)
from deepclust_cidfd.losses import (
    ContrastiveInstanceDiscrimination,
    FeatureDecorrelation,
    InstanceDiscrimination,
    contrastive_instance_discrimination,
    feature_decorrelation,
    instance_discrimination,
)
from deepclust_cidfd.schedules import FractionalMultiStep

__version__ = "0.1.0"
__all__ = [
    "FAMILIES", "ContrastiveInstanceDiscrimination", "FeatureDecorrelation",
    "FractionalMultiStep", "InstanceDiscrimination", "StripeParams", "StripeSet",
    "__version__", "contrastive_instance_discrimination", "draw_stripes",
    "feature_decorrelation", "idfd_aug", "idfd_ops", "instance_discrimination", "load_stripe_mnist",
    "load_stripes", "render_stripes", "stripe_mnist_images", "stripe_rng", "stripes_images",
]
