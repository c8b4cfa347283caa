"""Features of a part whose weights do not change, extracted once per (weights, images,
transform, precision) and reused: by the E-step and the evaluation of a stage, by head training
on a frozen backbone (``Step.prefill``), by ``deepclust predict`` and by a later run on the same
images.

Entries are kept in memory for the process and on disk under ``cache_dir()/features``
(``$DEEPCLUST_CACHE_DIR``), one ``<key>.pt`` file each. The key is a digest of the weights of
the part and every part it reads (their architecture and every tensor), of the images (name,
shape and every byte), of the transform (its modules, their settings and buffers) and of the
autocast precision. An entry that cannot be read, or holds the wrong number of rows, is a miss,
never an error; a cache that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import torch
from torch import nn

from corekit.data import ImageSet
from corekit.engine.numerics import cache_dir
from corekit.network import Network

if TYPE_CHECKING:
    from corekit.composer import Composed
    from corekit.step import Step
    from corekit.views import ViewName

FOLDER = "features"
MEMORY_ENTRIES = 8
_PLAIN = (bool, int, float, str, tuple, type(None))


def _update(digest: hashlib._Hash, tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    for name, tensor in tensors:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())


def describe_module(module: nn.Module) -> str:
    """The class, the plain settings (size, mean, ...) and the children of ``module``,
    recursively: what decides its output besides its tensors."""
    settings = {k: v for k, v in sorted(vars(module).items())
                if not k.startswith("_") and k != "training" and isinstance(v, _PLAIN)}
    children = [(name, describe_module(child)) for name, child in module.named_children()]
    return f"{type(module).__module__}.{type(module).__qualname__}{settings}{children}"


def module_digest(modules: Iterable[nn.Module]) -> str:
    """A digest of the architecture and every parameter and buffer of ``modules``."""
    digest = hashlib.blake2b(digest_size=16)
    for module in modules:
        digest.update(describe_module(module).encode())
        _update(digest, module.state_dict().items())
    return digest.hexdigest()


def images_digest(data: ImageSet) -> str:
    """A digest of a set's name, shape and every byte of its (N, C, H, W) uint8 images."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(data.name.encode())
    _update(digest, [("images", data.images)])
    return digest.hexdigest()


def feature_key(network: Network, part: str, data: ImageSet, transform: nn.Module,
                precision: torch.dtype | None) -> str:
    """The cache key of part ``part`` of ``network`` on every image of ``data`` prepared by
    ``transform`` under autocast ``precision`` (None: float32)."""
    chain = [network.part(name) for name in network.dependencies(part)]
    digest = hashlib.blake2b(digest_size=20)
    for piece in (module_digest(chain), images_digest(data), module_digest([transform]),
                  str(precision)):
        digest.update(piece.encode())
    return digest.hexdigest()


def fixed_part(network: Network, part: str, trained: bool) -> str | None:
    """The last part on the way to ``part`` (``network.dependencies``) whose weights, and those
    of every part it reads, stay as they are: all of them when ``trained`` is False (a stage
    of zero epochs), else the frozen ones from the encoder on whose BatchNorm statistics stay
    too (``Network.fixed_parts``). None when the encoder trains."""
    chain = network.dependencies(part)
    if not trained:
        return part
    still = network.fixed_parts()
    fixed = None
    for name in chain:
        if network.owner(name) not in still:
            break
        fixed = name
    return fixed


def through_cache(network: Network, name: str, data: ImageSet, transform: nn.Module, *,
                  precision: torch.dtype | None, trained: bool, device: torch.device,
                  extract: Callable[[str, dict[str, torch.Tensor]], torch.Tensor]
                  ) -> torch.Tensor:
    """Part ``name`` of ``network`` on every image of ``data`` (N, D): the output of its
    ``fixed_part`` from ``feature_cache()``, the rest computed from it.

    ``extract(part, known)`` computes ``part`` on every image, from the ``known`` (N, D) outputs
    of a part it reads (empty: from the images prepared by ``transform``)."""
    fixed = fixed_part(network, name, trained)
    if fixed is None:
        return extract(name, {})
    key = feature_key(network, fixed, data, transform, precision)
    known = {fixed: feature_cache().fetch(key, len(data), lambda: extract(fixed, {})).to(device)}
    return known[name] if name in known else extract(name, known)


class FeatureCache:
    """Whole-set features by key: the last ``MEMORY_ENTRIES`` in memory, every one on disk under
    ``folder`` (None: memory only)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.memory: OrderedDict[str, torch.Tensor] = OrderedDict()

    def get(self, key: str, rows: int) -> torch.Tensor | None:
        """The (rows, D) features of ``key``, or None when absent or unreadable."""
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        if self.folder is None:
            return None
        try:
            found = torch.load(self.folder / f"{key}.pt", map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any unreadable entry is a miss
            return None
        if not isinstance(found, torch.Tensor) or found.ndim < 1 or found.shape[0] != rows:
            return None
        self._remember(key, found)
        return found

    def put(self, key: str, features: torch.Tensor) -> None:
        """Keep ``features`` in memory and, atomically, on disk (skipped when unwritable)."""
        self._remember(key, features)
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                torch.save(features.detach().cpu(), handle)
            os.replace(tmp, self.folder / f"{key}.pt")
        except OSError:
            return

    def fetch(self, key: str, rows: int, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The features of ``key``, computed by ``compute()`` and kept on a miss."""
        found = self.get(key, rows)
        if found is None:
            found = compute()
            self.put(key, found)
        return found

    def _remember(self, key: str, features: torch.Tensor) -> None:
        self.memory[key] = features
        self.memory.move_to_end(key)
        while len(self.memory) > MEMORY_ENTRIES:
            self.memory.popitem(last=False)


_CACHES: dict[Path, FeatureCache] = {}


def feature_cache() -> FeatureCache:
    """The process's cache for the current ``cache_dir()`` (one per folder, so a test that
    points ``$DEEPCLUST_CACHE_DIR`` elsewhere gets a fresh one)."""
    folder = cache_dir() / FOLDER
    if folder not in _CACHES:
        _CACHES[folder] = FeatureCache(folder)
    return _CACHES[folder]


@attrs.define
class FrozenInputs:
    """The whole-set (N, D) outputs of a stage's frozen encoders whose BatchNorm layers do not
    train (``outputs``, by encoder name) and the views whose pipeline is the evaluation
    transform (``views``): on those views a training step reads the encoder's cached output
    instead of running it."""

    outputs: dict[str, torch.Tensor]
    views: list[ViewName]

    @classmethod
    def of(cls, composed: Composed, features: Callable[[str], torch.Tensor]) -> FrozenInputs:
        """Those of ``composed``'s online network; ``features(spec)`` extracts (and caches)
        the training set's outputs of ``spec``. Nothing is extracted when no encoder is
        frozen or no view is the evaluation transform."""
        network = composed.model.online
        evaluation = module_digest([composed.eval_transform])
        views = [v for v, pipeline in composed.views.items()
                 if module_digest([pipeline]) == evaluation]
        still = network.fixed_parts()
        frozen = [name for name in network.encoders if name in still] if views else []
        return cls({name: features(f"online:{name}") for name in frozen}, views)

    def fill(self, step: Step) -> None:
        """Prefill ``step`` with the frozen encoders' outputs of its images on those views."""
        for view in self.views:
            if view not in step.views:
                continue
            for name, output in self.outputs.items():
                step.prefill(name, view, output[step.indices.to(output.device)])
