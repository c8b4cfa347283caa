"""The ``scan`` plugin's registrations (pluggy hooks of ``corekit.hookspecs``).

Factories are ``"module:attr"`` targets, imported when first built: loading the plugin imports
no torch. The cluster head is the core's ``cluster_head``.
"""

from __future__ import annotations

from pathlib import Path

from corekit import RegisterFn, hookimpl, register_recipe_dir

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_state_types(register: RegisterFn) -> None:
    register("scan_neighbours", "deepclust_scan.neighbours:Neighbours")


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("scan", "deepclust_scan.losses:SCANLoss", aliases=("scan_loss",))


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
