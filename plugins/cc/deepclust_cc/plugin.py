"""The ``cc`` plugin's registrations (pluggy hooks of ``corekit.hookspecs``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from corekit import ClusterHead, NTXent, hookimpl
from deepclust_cc.heads import cc_instance_head
from deepclust_cc.losses import ClusterContrast, ClusterLoss

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_heads(register: Callable[..., None]) -> None:
    register("cc_instance_head", cc_instance_head)
    register("cc_cluster_head", ClusterHead)


@hookimpl
def register_losses(register: Callable[..., None]) -> None:
    register("cc_instance_loss", NTXent)
    register("cc_cluster_contrast", ClusterContrast)
    register("cc_cluster_loss", ClusterLoss, aliases=("cc_cluster",))


@hookimpl
def register_recipes(register: Callable[..., None]) -> None:
    for path in sorted(RECIPES.glob("*.toml")):
        register(path.stem, path)
