"""Collectives every batch-level loss calls, so scaling out with torchrun changes no loss.

On one process (no ``torch.distributed`` process group) ``gather`` and ``all_reduce`` return
their input unchanged. Under torchrun, ``gather`` concatenates the tensor of every rank along
dim 0 with gradient flowing back to each rank's own slice (summed over the ranks), and
``all_reduce`` sums (or averages) without gradient.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Literal, TypeVar

import torch
import torch.distributed as dist

from corekit.errors import UserError

_alone = 0  # > 0 inside ``alone()``: this rank acts as one process


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank (not within
    ``alone()``)."""
    return (not _alone and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Within the block this rank acts as one process (world size 1, no collective): for
    work rank 0 does by itself while the others wait in ``broadcast`` (numerics trials)."""
    global _alone
    _alone += 1
    try:
        yield
    finally:
        _alone -= 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """``(B, ...)`` on each of R ranks → ``(R·B, ...)``, rank order, with gradient.

    The identity on one process. Every rank must pass the same shape.
    """
    if not is_distributed():
        return tensor
    return _Gather.apply(tensor.contiguous())


class _Gather(torch.autograd.Function):
    """``gather`` with its gradient: each rank's slice of the gradient of the whole (R·B, ...)
    output, summed over the ranks (every rank's loss reads every rank's rows)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous()  # a transposed read (CC's column contrast) gives a strided one
        dist.all_reduce(total)
        return total.chunk(dist.get_world_size(), dim=0)[dist.get_rank()]


Reduction = Literal["sum", "mean", "min", "max"]
_OPS = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
        "max": dist.ReduceOp.MAX}


def all_reduce(tensor: torch.Tensor, op: Reduction = "sum") -> torch.Tensor:
    """The element-wise sum (mean, minimum, maximum) over ranks, as a new tensor without
    gradient, the same on every rank.

    The identity on one process (for ``mean`` too).
    """
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=_OPS[op])
    return out / world_size() if op == "mean" else out


def split(n: int) -> slice:
    """This rank's contiguous share of ``n`` rows (the whole-set E-step's): rank r holds rows
    ``[r·n // R, (r+1)·n // R)``, so the shares in rank order are the rows in order; every
    row on one process."""
    world, me = world_size(), rank()
    return slice(me * n // world, (me + 1) * n // world)


def _padded(tensor: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``tensor`` (n_r, ...) padded with zero rows to the longest rank's length, and every
    rank's length (rank order)."""
    length = torch.tensor([len(tensor)], device=tensor.device)
    lengths = [torch.zeros_like(length) for _ in range(world_size())]
    dist.all_gather(lengths, length)
    sizes = [int(x) for x in lengths]
    pad = tensor.new_zeros((max(sizes) - len(tensor), *tensor.shape[1:]))
    return torch.cat([tensor.detach(), pad]).contiguous(), sizes


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """``(n_r, ...)`` on each rank → ``(Σ n_r, ...)`` on every rank, rank order, without
    gradient; the ranks' row counts may differ (``split``'s shares). The identity on one
    process."""
    if not is_distributed():
        return tensor
    padded, sizes = _padded(tensor)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def gather_to_main(tensor: torch.Tensor) -> torch.Tensor | None:
    """``(n_r, ...)`` on each rank → ``(Σ n_r, ...)`` on rank 0 alone (None on the others),
    rank order, without gradient: for work rank 0 does over the whole set (a seed sample, a
    scikit-learn fit). The identity on one process."""
    if not is_distributed():
        return tensor
    padded, sizes = _padded(tensor)
    parts = [torch.empty_like(padded) for _ in sizes] if is_main() else None
    dist.gather(padded, parts, dst=0)
    if parts is None:
        return None
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def on_main(compute: Callable[[], torch.Tensor], like: torch.Tensor,
            shape: tuple[int, ...]) -> torch.Tensor:
    """``compute()`` run by rank 0 alone (within ``alone()``) and its tensor of ``shape``
    (dtype and device of ``like``) broadcast to every rank; ``compute()`` on one process."""
    if not is_distributed():
        return compute()
    if is_main():
        with alone():
            out = compute().to(like.device, like.dtype).contiguous()
    else:
        out = like.new_empty(shape)
    dist.broadcast(out, src=0)
    return out


@torch.no_grad()
def shuffled_forward(encode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                     groups: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """MoCo's shuffle-BN: ``encode`` run on a random shuffle of the global batch, cut into
    sub-batches that each have their own BatchNorm statistics, and its outputs put back in
    ``x``'s order: ``x`` (B, ...) → (B, D), without gradient.

    On one process ``x`` is shuffled (``torch.randperm`` from ``generator``) and cut into
    ``groups`` sub-batches (at most B) that ``encode`` sees one at a time, as on ``groups``
    devices. Under torchrun the ranks' ``x`` (B, ...) are gathered into the global batch
    (R·B, ...), rank 0 draws the permutation and broadcasts it, each rank encodes its slice
    of B shuffled rows (in ``groups // R`` sub-batches, at least one), and each rank gets
    back the outputs of its own rows. With ``groups`` = R the ranks compute what one process
    computes on the global batch with ``groups`` = R and the same permutation. Every rank
    must pass the same B.
    """
    world, me = world_size(), rank()
    everything = gather(x)
    n = everything.shape[0]
    order = (torch.randperm(n, generator=generator) if is_main()
             else torch.empty(n, dtype=torch.long)).to(x.device)
    if world > 1:
        dist.broadcast(order, src=0)
    share = n // world
    mine = everything[order[me * share:(me + 1) * share]]
    chunks = max(1, min(groups // world, len(mine)))
    shuffled = gather(torch.cat([encode(chunk) for chunk in mine.chunk(chunks)]))
    out = torch.empty_like(shuffled)
    out[order] = shuffled
    return out[me * share:(me + 1) * share]


def is_main() -> bool:
    """True on rank 0, and on one process: the rank that writes files, logs and decides."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank; nothing on one process."""
    if is_distributed():
        dist.barrier()


T = TypeVar("T")


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` (any picklable object) on every rank; ``obj`` itself on one process."""
    if not is_distributed():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


BUCKET_BYTES = 25 * 1024 * 1024
"""The size of one gradient all-reduce (DDP's default bucket)."""


def average_gradients(parameters: Iterable[torch.nn.Parameter],
                      bucket_bytes: int = BUCKET_BYTES) -> None:
    """Replace each trainable parameter's gradient by its mean over the ranks, as DDP does,
    in buckets of about ``bucket_bytes`` (one all-reduce per bucket and dtype). A parameter
    without a gradient on this rank counts as zeros, so every rank joins every all-reduce
    (and a rank that has none receives the others' mean). Nothing on one process."""
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    world = world_size()
    buckets: dict[tuple[torch.dtype, torch.device], list[list[torch.nn.Parameter]]] = {}
    for p in params:
        key = (p.dtype, p.device)
        chain = buckets.setdefault(key, [[]])
        if chain[-1] and sum(q.numel() for q in chain[-1]) * p.element_size() + \
                p.numel() * p.element_size() > bucket_bytes:
            chain.append([])
        chain[-1].append(p)
    for chain in buckets.values():
        for bucket in chain:
            flat = torch.cat([(p.grad if p.grad is not None
                               else torch.zeros_like(p)).detach().reshape(-1)
                              for p in bucket])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= world
            offset = 0
            for p in bucket:
                n = p.numel()
                mean = flat[offset:offset + n].view_as(p)
                if p.grad is None:
                    p.grad = mean.clone()
                else:
                    p.grad.copy_(mean)
                offset += n


def broadcast_buffers(modules: Iterable[torch.nn.Module]) -> None:
    """Rank 0's buffers (BatchNorm running statistics) in every rank's ``modules``, one
    broadcast per dtype and device, as DDP's ``broadcast_buffers`` keeps them in step: each
    rank's BatchNorm sees only its share of the batch. Nothing on one process."""
    if not is_distributed():
        return
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    seen: set[int] = set()
    for module in modules:
        for buffer in module.buffers():
            if id(buffer) not in seen:
                seen.add(id(buffer))
                groups.setdefault((buffer.dtype, buffer.device), []).append(buffer)
    for buffers in groups.values():
        flat = torch.cat([b.detach().reshape(-1) for b in buffers])
        dist.broadcast(flat, src=0)
        offset = 0
        for b in buffers:
            b.detach().copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


def sync_batch_norm(networks: Sequence[torch.nn.Module], device: torch.device) -> int:
    """``train.sync_bn = true``: under torchrun, every BatchNorm layer inside ``networks`` (none of
    them a BatchNorm layer itself) becomes a ``torch.nn.SyncBatchNorm`` (in place, with the same
    parameters and buffers, so names, state dicts and the optimizer's parameters stay as they
    are), which normalises in training by the statistics of the global batch; the number of
    layers replaced. Nothing on one process, where the batch is the global batch already.
    Refused (exit 2) on a device other than CUDA: SyncBatchNorm does not run on the CPU (gloo)."""
    if not is_distributed():
        return 0
    if device.type != "cuda":
        raise UserError(f"train.sync_bn = true needs CUDA, but the processes train on "
                        f"{device.type}, where SyncBatchNorm does not run; drop train.sync_bn "
                        "(each process's BatchNorm then normalises its share of the batch)")
    for network in networks:
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    return sum(isinstance(m, torch.nn.SyncBatchNorm) for network in networks
               for m in network.modules())


def shard(order: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, int]:
    """This rank's part of ``order`` walked in global batches of ``batch_size``: of every
    batch the rank's contiguous share (rank order, so the ranks' batches together are the
    global batch), and the share's size. A last, short batch keeps the rows that split evenly
    (none may be left). ``order`` and ``batch_size`` unchanged on one process."""
    world = world_size()
    if world == 1:
        return order, batch_size
    share, me = batch_size // world, rank()
    parts = []
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        size = len(chunk) // world
        parts.append(chunk[me * size:(me + 1) * size])
    return (torch.cat(parts) if parts else order[:0]), share


def check_batch(batch_size: int, what: str = "train.batch_size") -> None:
    """Refuse (exit 2) a global batch that does not split evenly over the ranks."""
    world = world_size()
    if batch_size % world:
        raise UserError(f"{what} = {batch_size} does not divide by the world size {world} "
                        f"(torchrun processes); use a multiple of {world}")


def seed_rank(seed: int) -> None:
    """Under torchrun, re-seed the global generators (Python, NumPy, torch) of this rank from
    (``seed``, rank), so the ranks draw different augmentations and a rerun draws the same
    ones. Nothing on one process (the stage's ``seed_everything`` stands)."""
    if not is_distributed():
        return
    from corekit.engine.seed import seed_everything

    seed_everything(seed * 1_000_003 + 7_919 * (rank() + 1))


DEFAULT_TIMEOUT = timedelta(minutes=10)


def launched() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(timeout: timedelta = DEFAULT_TIMEOUT) -> Iterator[bool]:
    """Join torch.distributed's process group described by torchrun's environment
    (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) when
    ``WORLD_SIZE`` > 1: nccl on CUDA (device ``cuda:LOCAL_RANK``), else gloo; leave it on
    exit, errors included. Yields whether a group was joined; on one process it does
    nothing."""
    if not launched() or dist.is_initialized():
        yield False
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    try:
        yield True
    except Exception as exc:
        print(failure_line(exc, timeout), file=sys.stderr, flush=True)
        raise
    finally:
        gc.collect()  # gather's autograd nodes hold the group (see corekit.testing)
        dist.destroy_process_group()


def failure_line(exc: Exception, timeout: timedelta) -> str:
    """The line a rank prints when ``exc`` ends its run under torchrun: the rank, and for a
    failed collective (a process died, raised or hangs) that the others are to blame. torchrun
    then stops every rank and its summary names the rank that failed first."""
    where = f"deepclust: rank {rank()} of {world_size()}"
    text = str(exc)
    if isinstance(exc, dist.DistError) or any(lib in text for lib in ("gloo", "NCCL")):
        return (f"{where} stopped: a collective with the other processes failed or waited "
                f"longer than --dist-timeout ({timeout}): another process died, raised or "
                f"hangs (torchrun's summary below names the rank that failed first): {text}")
    return f"{where} stopped: {type(exc).__name__}: {exc}"


def local_device() -> str | None:
    """The device of this rank under torchrun (``cuda:LOCAL_RANK``, or ``cpu`` without CUDA);
    None on one process."""
    if not is_distributed():
        return None
    if torch.cuda.is_available():
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return "cpu"
