"""The plugin's need kind: ``spice_queue_batch``, MoCo's queue length a multiple of the global
batch (MoCo enqueues whole batches), checked when the recipe is composed."""

from __future__ import annotations

from corekit import Need, NeedContext


def check_queue_batch(need: Need, ctx: NeedContext) -> str | None:
    """The queue ``need.name`` holds a whole number of global batches, so each push fills
    whole slots and the pointer returns to 0 (12,800 / 128 = 100)."""
    queue = ctx.state.get(need.name)
    size = getattr(queue, "size", None)
    if size is None:
        return None  # the state need names the missing queue
    batch = ctx.stage.train.batch_size
    if size % batch:
        lower, upper = size // batch * batch, (size // batch + 1) * batch
        return (f"state.{need.name}.size: {size} is not a multiple of the global batch "
                f"train.batch_size = {batch}; use {lower or upper} or {upper}")
    return None


PROTOTYPE_LABELERS = ("spice_prototype_labeler", "spice_prototype_estep",
                      "spice.spice_prototype_labeler", "spice.spice_prototype_estep")


def check_estep_sizes(need: Need, ctx: NeedContext) -> str | None:
    """Every prototype labeler writing targets ``need.name`` labels at least ``N_s`` and ``M``
    images (``sample``): the E-step cannot pick more images than it sees."""
    for name, spec in ctx.stage.pseudo_labeler.items():
        if spec.writes != need.name or spec.type not in PROTOTYPE_LABELERS or not spec.sample:
            continue
        for key in ("n_s", "m"):
            value = spec.options.get(key)
            if value is not None and value > spec.sample:
                return (f"pseudo_labeler.{name}.{key}: {value} exceeds the {spec.sample} images "
                        f"the E-step labels (pseudo_labeler.{name}.sample); use at most "
                        f"{spec.sample}, or leave it out for ⌊N/K⌋")
    return None
