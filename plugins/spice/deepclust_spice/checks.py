"""The plugin's need kind: ``spice_queue_batch``, MoCo's queue length a multiple of the global
batch (spec spice.md P10), checked when the recipe is composed."""

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
