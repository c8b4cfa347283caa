"""Registrations of the ``digpro`` plugin (hooks in corekit/hookspecs.py).

``digpro_base`` and ``digpro_prototype_aggregation`` are the very classes ``propos_psa`` and
``propos_psl`` (DigPro's L_base is ProPos's PSA and its "prototype aggregation" is ProPos's
PSL, identical formula and code), registered under the DigPro names.
Factories are ``"module:attr"`` targets, imported when first built: loading the plugin imports
no torch.
"""

from __future__ import annotations

from pathlib import Path

from corekit import RegisterFn, hookimpl, register_recipe_dir

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("digpro_base", "deepclust_propos.losses:PSA")
    register("digpro_dynamic_grouping", "deepclust_digpro.losses:DynamicGrouping",
             aliases=("dynamic_grouping",))
    register("digpro_prototype_aggregation", "deepclust_propos.losses:PSL",
             aliases=("prototype_aggregation",))


@hookimpl
def register_need_kinds(register: RegisterFn) -> None:
    register("digpro_group_width", "deepclust_digpro.losses:check_group_width")  # = WIDTH_NEED


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
