"""Registrations of the ``digpro`` plugin (hooks in corekit/hookspecs.py).

``digpro_base`` and ``digpro_prototype_aggregation`` are the very classes ``propos_psa`` and
``propos_psl`` (specs/digpro.md §2.0, D9: DigPro's L_base is ProPos's PSA and its "prototype
aggregation" is ProPos's PSL, identical formula and code), registered under the DigPro names.
"""

from __future__ import annotations

from pathlib import Path

from deepclust_propos import PSA, PSL

from corekit import RegisterFn, hookimpl, register_recipe_dir
from deepclust_digpro.losses import WIDTH_NEED, DynamicGrouping, check_group_width

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("digpro_base", PSA)
    register("digpro_dynamic_grouping", DynamicGrouping, aliases=("dynamic_grouping",))
    register("digpro_prototype_aggregation", PSL, aliases=("prototype_aggregation",))


@hookimpl
def register_need_kinds(register: RegisterFn) -> None:
    register(WIDTH_NEED, check_group_width)


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
