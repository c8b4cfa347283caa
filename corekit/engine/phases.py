"""Wall-clock time per phase of the training loop, for ``train.time_phases = true``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import attrs
import torch

T = TypeVar("T")
PHASES = ("data", "augment", "forward", "backward", "optimizer", "after_step", "estep")
_END = object()


@attrs.define
class PhaseTimer:
    """Seconds spent in each named phase (``PHASES``: batch loading, view augmentation, forward
    with losses, backward, optimizer step with clipping, after-step state updates such as the
    EMA target or the memory bank, E-step), summed until ``take``.

    Disabled, every call is a no-op. Enabled on CUDA, each phase edge synchronises the device,
    which costs throughput: leave it off except to find where a step's time goes."""

    enabled: bool = False
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    seconds: dict[str, float] = attrs.field(factory=dict)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def iterate(self, name: str, items: Iterable[T]) -> Iterator[T]:
        """``items``, with the time of producing each one counted as phase ``name`` (the plain
        iterator when disabled: nothing wraps the loop)."""
        return self._timed(name, iter(items)) if self.enabled else iter(items)

    def _timed(self, name: str, iterator: Iterator[T]) -> Iterator[T]:
        while True:
            with self(name):
                item = next(iterator, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]

    def take(self) -> dict[str, float]:
        """The summed seconds per phase (``time_<phase>`` keys), reset to zero."""
        out = {f"time_{name}": seconds for name, seconds in self.seconds.items()}
        self.seconds = {}
        return out

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
