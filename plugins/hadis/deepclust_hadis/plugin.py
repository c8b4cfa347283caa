"""Registrations of the ``hadis`` plugin (hooks in corekit/hookspecs.py).

``dsa`` and ``pcl`` are the very classes ``propos_psa`` and ``propos_psl`` (HaDis's DSA and
PCL are ProPos's PSA and PSL, identical code), registered here under
the HaDis paper's names. Factories are ``"module:attr"`` targets, imported when first built:
loading the plugin imports no torch.
"""

from __future__ import annotations

from pathlib import Path

from corekit import RegisterFn, hookimpl, register_recipe_dir

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("dsa", "deepclust_propos.losses:PSA", aliases=("hadis_dsa",))
    register("pcl", "deepclust_propos.losses:PSL", aliases=("hadis_pcl",))
    register("hsd", "deepclust_hadis.losses:HSD", aliases=("hadis_hsd",))


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
