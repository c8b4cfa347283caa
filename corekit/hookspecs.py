"""The extension points of deepclust: one pluggy hook per component kind.

Every hook hands the plugin a ``register`` callback and is called once, when the
plugin manager starts (``corekit.plugins.load_plugins``). A plugin registers factories, best as
``"module:attr"`` targets that are imported only when the component is first built, so that
loading the plugin imports no torch (a factory object works too):

    from corekit import hookimpl

    @hookimpl
    def register_losses(register):
        register("my_loss", "my_plugin.losses:MyLoss", aliases=("paper_name",))

The core's own components register through these same hooks (``corekit.builtins``).
Each hook is the ``hook`` of one row of ``corekit.kinds.TABLE``; what the kind's factory must
return is stated below and checked against the protocol the row names (``corekit.contracts``,
exported as ``corekit.Loss``, ``corekit.Head``, ...). A hook's docstring names the context
arguments of its kind, which the composer passes to a factory that accepts them.
"""

from __future__ import annotations

import pluggy

from corekit.registry import RegisterFn

PROJECT = "deepclust"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backbones(register: RegisterFn) -> None:
    """Backbones: ``factory(in_channels=C, **options) -> nn.Module`` mapping B×C×H×W to B×D,
    with an ``out_dim`` attribute; it may also accept ``image_size`` and ``n_clusters``.
    Fired once at plugin load."""


@hookspec
def register_augmentations(register: RegisterFn) -> None:
    """View pipelines: ``factory(size, channels, mean, std, **options) -> nn.Module`` mapping a
    float batch in [0, 1] on the device to one augmented view. Fired once at plugin load."""


@hookspec
def register_heads(register: RegisterFn) -> None:
    """Heads: ``factory(in_dim, **options) -> nn.Module`` with ``out_dim`` and ``produces``
    attributes; it may also accept ``in_channels``, ``image_size`` and ``n_clusters``.
    Fired once at plugin load."""


@hookspec
def register_losses(register: RegisterFn) -> None:
    """Losses: ``factory(**options) -> Loss``; a loss is ``loss(step) -> scalar tensor`` and
    declares what it reads through ``needs() -> list[Need]``; the factory may accept
    ``n_clusters``. Fired once at plugin load."""


@hookspec
def register_pseudo_labelers(register: RegisterFn) -> None:
    """Pseudo-labelers: ``factory(**options)``, given ``n_clusters`` and ``make_clusterer(table,
    key)`` (builds a registered clusterer) when its signature takes them. Per step,
    ``labeler(step) -> (labels, mask)`` with ``needs()``; per data set, ``reads`` and
    ``label(inputs) -> LabelRows`` (``[pseudo_labeler.NAME] inputs = {...}, writes = "STATE"``).
    Fired once at plugin load."""


@hookspec
def register_clusterers(register: RegisterFn) -> None:
    """E-step clusterers: ``factory(n_clusters, **options)`` with
    ``fit(features) -> ClusterResult``. Fired once at plugin load."""


@hookspec
def register_state_types(register: RegisterFn) -> None:
    """State types for ``[state.NAME] type = ...``: ``factory(**options) -> nn.Module`` (its
    buffers are checkpointed), optionally with ``needs()`` and lifecycle hooks
    (``corekit.lifecycle``). The composer passes whichever of ``network``, ``n_images``,
    ``n_clusters``, ``total_steps``, ``steps_per_epoch``, ``generator`` the factory accepts.
    Fired once at plugin load."""


@hookspec
def register_schedules(register: RegisterFn) -> None:
    """Learning-rate schedules: ``factory(steps_per_epoch, epochs, **options)`` with
    ``factor(step) -> float``, the multiplier of the base lr at 1-based step ``step``.
    Fired once at plugin load."""


@hookspec
def register_optimizers(register: RegisterFn) -> None:
    """Optimizers: ``factory(params, lr, weight_decay, **options) -> torch.optim.Optimizer``,
    where ``params`` are the parameter groups the core builds (lr multipliers, no decay on norm
    and bias). Fired once at plugin load."""


@hookspec
def register_samplers(register: RegisterFn) -> None:
    """Samplers: ``factory(**options)`` with ``order(n, count, generator, states) -> (count,)``
    dataset indices of one epoch, optionally with ``needs()``. Fired once at plugin load."""


@hookspec
def register_need_kinds(register: RegisterFn) -> None:
    """Need kinds: ``register(kind, check)`` with ``check(need, ctx) -> str | None`` (None when
    met, else what to add to the recipe); components then declare ``Need(kind, ...)``.
    Fired once at plugin load."""


@hookspec
def register_datasets(register: RegisterFn) -> None:
    """Data sets for ``--data NAME`` / ``data.name = "NAME[:PATH]"``: ``loader(folder) ->
    ImageSet`` (``folder`` is the PATH, or None), deterministic (seeded) when it generates
    images. Fired once at plugin load."""


@hookspec
def register_recipes(register: RegisterFn) -> None:
    """Recipes: ``register(name, path_to_toml)``; a recipe file may carry per-dataset presets.
    Fired once at plugin load."""
