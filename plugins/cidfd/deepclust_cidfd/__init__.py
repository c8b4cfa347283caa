"""IDFD (Tao, Takagi, Nakata, ICLR 2021) and cIDFD (Oshima, Takagi, Nakata, 2024) as a
deepclust plugin.

Spec: ``shared/specs/cidfd.md``; written from its equations, not from the IDFD code (whose
licence forbids reuse). The plugin adds IDFD's instance discrimination and feature
decorrelation, cIDFD's contrastive instance discrimination, IDFD's augmentation and lr steps,
the Stripe-MNIST / Stripes datasets and the ``idfd`` / ``cidfd`` recipes; memory banks, heads,
backbones, k-means and the two-stage hand-off are the core's.
"""

from __future__ import annotations

import importlib
from typing import Any

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
