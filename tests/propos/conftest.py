"""Fixtures for the ProPos tests: the core plus only the propos plugin, via its entry point."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import corekit.builtins  # noqa: F401  (heavy imports at collection, not in a test)
from corekit.plugins import Plugins, load_plugins


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Plugins:
    monkeypatch.setenv("DEEPCLUST_PLUGINS", "propos")
    return load_plugins()


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Run single-threaded: these tests are many small ops, and on a shared 2-core machine two
    intra-op threads made a 3-step training run 20-30x slower than one (measured)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
