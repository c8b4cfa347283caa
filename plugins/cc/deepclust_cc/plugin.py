"""The ``cc`` plugin's registrations (pluggy hooks of ``corekit.hookspecs``).

Factories are ``"module:attr"`` targets, imported when first built: loading the plugin imports
no torch. The instance loss and the cluster head are the core's own classes.
"""

from __future__ import annotations

from pathlib import Path

from corekit import RegisterFn, hookimpl, register_recipe_dir

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_heads(register: RegisterFn) -> None:
    register("cc_instance_head", "deepclust_cc.heads:cc_instance_head")
    register("cc_cluster_head", "corekit:ClusterHead")


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("cc_instance_loss", "corekit:NTXent")
    register("cc_cluster_contrast", "deepclust_cc.losses:ClusterContrast")
    register("cc_cluster_loss", "deepclust_cc.losses:ClusterLoss", aliases=("cc_cluster",))


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
