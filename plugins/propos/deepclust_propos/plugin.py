"""Registrations of the ``propos`` plugin (hooks in corekit/hookspecs.py).

Factories are ``"module:attr"`` targets, imported when first built: loading the plugin imports
no torch.
"""

from __future__ import annotations

from pathlib import Path

from corekit import RegisterFn, hookimpl, register_recipe_dir

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_heads(register: RegisterFn) -> None:
    register("latent_gaussian_noise", "deepclust_propos.heads:LatentGaussianNoise")


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("propos_psa", "deepclust_propos.losses:PSA", aliases=("psa",))
    register("propos_psl", "deepclust_propos.losses:PSL", aliases=("psl",))


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
