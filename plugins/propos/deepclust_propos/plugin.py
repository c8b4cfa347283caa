"""Registrations of the ``propos`` plugin (hooks in corekit/hookspecs.py)."""

from __future__ import annotations

from pathlib import Path

from corekit import RegisterFn, hookimpl, register_recipe_dir
from deepclust_propos.heads import LatentGaussianNoise
from deepclust_propos.losses import PSA, PSL

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_heads(register: RegisterFn) -> None:
    register("latent_gaussian_noise", LatentGaussianNoise)


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("propos_psa", PSA, aliases=("psa",))
    register("propos_psl", PSL, aliases=("psl",))


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
