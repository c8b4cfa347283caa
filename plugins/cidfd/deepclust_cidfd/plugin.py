"""Registrations of the ``cidfd`` plugin (hooks in corekit/hookspecs.py).

IDFD is the base of cIDFD the way ProPos is the base of HaDis, so its two losses live here
too, under plain names with ``idfd_`` aliases; the one cIDFD loss gets a ``cidfd_`` alias.
Factories are ``"module:attr"`` targets, imported when first built: loading the plugin imports
no torch.
"""

from __future__ import annotations

from pathlib import Path

from corekit import RegisterFn, hookimpl, register_recipe_dir

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("instance_discrimination", "deepclust_cidfd.losses:InstanceDiscrimination",
             aliases=("idfd_instance_discrimination", "idfd_id"))
    register("feature_decorrelation", "deepclust_cidfd.losses:FeatureDecorrelation",
             aliases=("idfd_feature_decorrelation", "idfd_fd"))
    register("contrastive_instance_discrimination",
             "deepclust_cidfd.losses:ContrastiveInstanceDiscrimination", aliases=("cidfd_ci",))


@hookimpl
def register_augmentations(register: RegisterFn) -> None:
    register("idfd_aug", "deepclust_cidfd.augment:idfd_aug")


@hookimpl
def register_schedules(register: RegisterFn) -> None:
    register("idfd_multistep", "deepclust_cidfd.schedules:FractionalMultiStep")


@hookimpl
def register_need_kinds(register: RegisterFn) -> None:
    register("cidfd_bank_source", "deepclust_cidfd.losses:check_bank_source")  # = BANK_SOURCE


@hookimpl
def register_datasets(register: RegisterFn) -> None:
    register("stripe-mnist", "deepclust_cidfd.data:load_stripe_mnist")
    register("stripes", "deepclust_cidfd.data:load_stripes")


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
