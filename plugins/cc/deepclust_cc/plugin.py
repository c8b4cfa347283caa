"""The ``cc`` plugin's registrations (pluggy hooks of ``corekit.hookspecs``)."""

from __future__ import annotations

from pathlib import Path

from corekit import ClusterHead, NTXent, RegisterFn, hookimpl, register_recipe_dir
from deepclust_cc.heads import cc_instance_head
from deepclust_cc.losses import ClusterContrast, ClusterLoss

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_heads(register: RegisterFn) -> None:
    register("cc_instance_head", cc_instance_head)
    register("cc_cluster_head", ClusterHead)


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("cc_instance_loss", NTXent)
    register("cc_cluster_contrast", ClusterContrast)
    register("cc_cluster_loss", ClusterLoss, aliases=("cc_cluster",))


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
