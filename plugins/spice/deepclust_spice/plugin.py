"""The ``spice`` plugin's registrations (pluggy hooks of ``corekit.hookspecs``).

Factories are ``"module:attr"`` targets, imported when first built: loading the plugin imports
no torch.
"""

from __future__ import annotations

from pathlib import Path

from corekit import RegisterFn, hookimpl, register_recipe_dir

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def register_backbones(register: RegisterFn) -> None:
    register("clusterresnet34", "deepclust_spice.backbones:clusterresnet34")
    register("wrn28_2", "deepclust_spice.backbones:wrn28_2")
    register("wrn28_8", "deepclust_spice.backbones:wrn28_8")
    register("wrn37_2_stl10", "deepclust_spice.backbones:wrn37_2_stl10")


@hookimpl
def register_heads(register: RegisterFn) -> None:
    register("moco_projection", "deepclust_spice.heads:moco_projection")
    register("spice_multi_head", "deepclust_spice.heads:SpiceMultiHead")
    register("spice_stack_flat", "deepclust_spice.heads:spice_stack_flat")
    register("linear_classifier", "deepclust_spice.heads:LinearClassifier")


@hookimpl
def register_losses(register: RegisterFn) -> None:
    register("moco_infonce", "deepclust_spice.moco:MocoInfoNCE")
    register("double_softmax_ce", "deepclust_spice.double_softmax:DoubleSoftmaxCE")


@hookimpl
def register_pseudo_labelers(register: RegisterFn) -> None:
    register("spice_prototype_labeler", "deepclust_spice.prototypes:spice_prototype_labeler",
             aliases=("spice_prototype_estep",))
    register("spice_reliable_labeler", "deepclust_spice.reliable:spice_reliable_labeler")


@hookimpl
def register_state_types(register: RegisterFn) -> None:
    register("spice_selection", "deepclust_spice.selection:spice_selection")
    register("spice_reliable_guard", "deepclust_spice.guard:ReliableGuard")


@hookimpl
def register_samplers(register: RegisterFn) -> None:
    register("spice_labelled", "deepclust_spice.sampler:LabelledPasses")


@hookimpl
def register_need_kinds(register: RegisterFn) -> None:
    register("spice_queue_batch", "deepclust_spice.checks:check_queue_batch")
    register("spice_estep_sizes", "deepclust_spice.checks:check_estep_sizes")


@hookimpl
def register_recipes(register: RegisterFn) -> None:
    register_recipe_dir(register, RECIPES)
