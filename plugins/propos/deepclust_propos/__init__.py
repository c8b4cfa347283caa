"""deepclust plugin ``propos``: ProPos's latent noise, PSA and PSL (Huang et al., TPAMI 2022).

HaDis (``deepclust_hadis``) and DigPro reuse these components under their own paper names.
"""

from __future__ import annotations

from corekit import LazyExports

__version__ = "0.1.0"

_MODULES: dict[str, tuple[str, ...]] = {
    "deepclust_propos.directions": ("DIRECTIONS", "symmetric", "teacher_embedding"),
    "deepclust_propos.heads": ("LatentGaussianNoise",),
    "deepclust_propos.losses": ("PSA", "PSL", "prototypes", "psa", "psl"),
}
_LAZY = LazyExports(__name__, _MODULES, "__version__")
__all__, __getattr__, __dir__ = _LAZY.names, _LAZY.getattr, _LAZY.dir
