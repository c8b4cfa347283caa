"""Fixtures for the ProPos tests: the core plus only the propos plugin, via its entry point."""

from __future__ import annotations

import pytest

import corekit.builtins  # noqa: F401  (heavy imports at collection, not in a test)
from corekit.plugins import Plugins, load_plugins


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Plugins:
    monkeypatch.setenv("DEEPCLUST_PLUGINS", "propos")
    return load_plugins()
