"""CC's instance head g_I, built from the core projector (Li et al. 2021 §3.2).

The cluster head g_C is the core ``ClusterHead`` unchanged (Li et al. 2021 §3.3); ``plugin.py``
registers it under its CC name.
"""

from __future__ import annotations

from corekit import MLPProjector


def cc_instance_head(in_dim: int, out_dim: int = 128, hidden: int | None = None) -> MLPProjector:
    """Instance head g_I: ``Linear(D_h, D_h) → ReLU → Linear(D_h, out_dim)`` then row-wise L2
    normalisation, no BatchNorm, no dropout (Li et al. 2021 §3.2).

    ``hidden`` defaults to ``in_dim`` (the official code's width); 328,320 parameters for
    D_h = 512 and ``out_dim = 128``.

    ``produces = "unit"`` (an ``MLPProjector`` with ``normalize=True``): rows of unit norm,
    what NT-Xent reads as an embedding.
    """
    return MLPProjector(in_dim, hidden=hidden or in_dim, out_dim=out_dim, layers=2,
                        batch_norm=False, normalize=True)
