"""The component kinds: one row per kind, the single place a kind is described.

The registry's namespaces (``corekit.registry.KINDS``), the plugin hooks (``corekit.plugins``),
the contract a built component must meet (``corekit.contracts``), the context the builder may
pass to a factory (``corekit.builder``) and which kinds ``deepclust components KIND NAME``
builds to read their needs (``corekit.describe``) are all read off :data:`TABLE`. Adding a kind
is one row here plus its hookspec in ``corekit/hookspecs.py`` (and its row in the hook table of
docs/plugins.md); ``tests/core/test_kinds.py`` holds the hookspecs and the docs to this table.

This module imports nothing heavy: listing plugins and components reads it without torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import attrs


@attrs.frozen(kw_only=True)
class Kind:
    """One component kind.

    ``hook`` is the pluggy hook plugins register it through; ``contract`` the name of the
    protocol in ``corekit.contracts`` a built component must fit (None: the builder builds no
    component of this kind); ``context`` the arguments the builder may pass to a factory on top
    of its recipe options (a factory receives those its signature accepts, and they are not
    listed as its options); ``summary`` one line on what a factory is; ``probed``: ``deepclust
    components KIND NAME`` builds the component with its defaults to show its needs and what
    it produces."""

    name: str
    hook: str = attrs.field(validator=attrs.validators.matches_re(r"register_\w+"))
    contract: str | None
    context: tuple[str, ...] = ()
    summary: str
    probed: bool = False


TABLE: tuple[Kind, ...] = (
    Kind(name="backbone", hook="register_backbones", contract="Backbone",
         context=("in_channels", "image_size", "n_clusters"),
         summary="image batch -> feature vectors; factory(in_channels, **options) -> nn.Module"),
    Kind(name="augmentation", hook="register_augmentations", contract="Augmentation",
         context=("size", "channels", "mean", "std"),
         summary="float batch in [0,1] -> one view; factory(size, channels, mean, std, ...)"),
    Kind(name="head", hook="register_heads", contract="Head",
         context=("in_dim", "in_channels", "image_size", "n_clusters"),
         summary="features -> what a loss reads; factory(in_dim, **options) -> nn.Module",
         probed=True),
    Kind(name="loss", hook="register_losses", contract="Loss", context=("n_clusters",),
         summary="step -> scalar; factory(**options) -> Loss with needs()", probed=True),
    Kind(name="pseudo_labeler", hook="register_pseudo_labelers", contract="PseudoLabeler",
         context=("n_clusters", "make_clusterer"),
         summary="per step: step -> (labels, mask); per data set: label(inputs) -> LabelRows; "
                 "factory(**options)", probed=True),
    Kind(name="clusterer", hook="register_clusterers", contract="Clusterer",
         context=("n_clusters",),
         summary="features -> ClusterResult; factory(n_clusters, **options) with fit()"),
    Kind(name="state", hook="register_state_types", contract="State",
         context=("network", "n_images", "n_clusters", "total_steps", "steps_per_epoch",
                  "generator"),
         summary="named training state; factory(**options) -> nn.Module with lifecycle hooks"),
    Kind(name="schedule", hook="register_schedules", contract="Schedule",
         context=("steps_per_epoch", "epochs"),
         summary="lr factor per step; factory(steps_per_epoch, epochs, **options) with "
                 "factor()"),
    Kind(name="optimizer", hook="register_optimizers", contract="Optimizer",
         context=("params", "lr", "weight_decay"),
         summary="factory(params, lr, weight_decay, **options) -> torch.optim.Optimizer"),
    Kind(name="sampler", hook="register_samplers", contract="Sampler",
         summary="an epoch's image order; factory(**options) with order(n, count, generator, "
                 "states)", probed=True),
    Kind(name="need", hook="register_need_kinds", contract=None,
         summary="a need kind's checker: check(need, ctx) -> None or what to add"),
    Kind(name="dataset", hook="register_datasets", contract=None,
         summary="a data set: loader(folder or None) -> ImageSet, used as --data NAME[:PATH]"),
    Kind(name="recipe", hook="register_recipes", contract=None,
         summary="a TOML recipe file; register(name, path)"),
)
"""Every component kind, in the order listings show them."""

BY_NAME: Mapping[str, Kind] = MappingProxyType({kind.name: kind for kind in TABLE})
"""The row of each kind, by name."""
