"""Registrations of the ``cidfd`` plugin (hooks in corekit/hookspecs.py).

IDFD is the base of cIDFD the way ProPos is the base of HaDis, so its two losses live here
too, under plain names with ``idfd_`` aliases; the one cIDFD loss gets a ``cidfd_`` alias.
"""

from __future__ import annotations

from pathlib import Path

from corekit import RegisterFn, hookimpl, register_recipe_dir
from deepclust_cidfd.augment import idfd_aug
from deepclust_cidfd.data import load_stripe_mnist, load_stripes
from deepclust_cidfd.losses import (
    BANK_SOURCE,
    ContrastiveInstanceDiscrimination,
    FeatureDecorrelation,
    InstanceDiscrimination,
    check_bank_source,
)
from deepclust_cidfd.schedules import FractionalMultiStep

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("instance_discrimination", InstanceDiscrimination,
             aliases=("idfd_instance_discrimination", "idfd_id"))
    register("feature_decorrelation", FeatureDecorrelation,
             aliases=("idfd_feature_decorrelation", "idfd_fd"))
    register("contrastive_instance_discrimination", ContrastiveInstanceDiscrimination,
             aliases=("cidfd_ci",))


@hookimpl
def register_augmentations(register: RegisterFn) -> None:
    register("idfd_aug", idfd_aug)


@hookimpl
def register_schedules(register: RegisterFn) -> None:
    register("idfd_multistep", FractionalMultiStep)


@hookimpl
def register_need_kinds(register: RegisterFn) -> None:
    register(BANK_SOURCE, check_bank_source)


@hookimpl
def register_datasets(register: RegisterFn) -> None:
    register("stripe-mnist", load_stripe_mnist)
    register("stripes", load_stripes)


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
