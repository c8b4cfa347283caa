"""deepclust plugin ``propos``: ProPos's latent noise, PSA and PSL (specs/hadis.md §2.3-2.4).

HaDis (``deepclust_hadis``) and DigPro reuse these components under their own paper names.
"""

from deepclust_propos.directions import DIRECTIONS, symmetric, teacher_embedding
from deepclust_propos.heads import LatentGaussianNoise
from deepclust_propos.losses import PSA, PSL, prototypes, psa, psl

__version__ = "0.1.0"
__all__ = [
    "DIRECTIONS", "PSA", "PSL", "LatentGaussianNoise", "__version__", "prototypes", "psa", "psl",
    "symmetric", "teacher_embedding",
]
