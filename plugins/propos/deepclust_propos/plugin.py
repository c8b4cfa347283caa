"""Registrations of the ``propos`` plugin (hooks in corekit/hookspecs.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from corekit import hookimpl
from deepclust_propos.heads import LatentGaussianNoise
from deepclust_propos.losses import PSA, PSL

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_heads(register: Callable[..., None]) -> None:
    register("latent_gaussian_noise", LatentGaussianNoise)


@hookimpl
def register_losses(register: Callable[..., None]) -> None:
    register("propos_psa", PSA, aliases=("psa",))
    register("propos_psl", PSL, aliases=("psl",))


@hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    for path in sorted(RECIPES.glob("*.toml")):
        register(path.stem, path)
