"""Collectives every batch-level loss calls, so scaling out with torchrun changes no loss.

On one process (no ``torch.distributed`` process group) ``gather`` and ``all_reduce`` return
their input unchanged. Under torchrun, ``gather`` concatenates the tensor of every rank along
dim 0 with gradient flowing back to each rank's own slice (``torch.distributed.nn``), and
``all_reduce`` sums (or averages) without gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


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
    from torch.distributed.nn.functional import all_gather

    out = torch.cat(all_gather(tensor.contiguous()), dim=0)
    if out.requires_grad:
        # all_gather's backward writes row-major data into buffers shaped like the incoming
        # gradient; a transposed gradient (CC's column contrast reads yᵀ) would land scrambled.
        out.register_hook(lambda grad: grad.contiguous())
    return out


def all_reduce(tensor: torch.Tensor, op: Literal["sum", "mean"] = "sum") -> torch.Tensor:
    """The element-wise sum (or mean) over ranks, as a new tensor without gradient.

    The identity on one process (for ``mean`` too).
    """
    if not is_distributed():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size() if op == "mean" else out
