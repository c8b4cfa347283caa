"""A package's exports imported on first use (PEP 562), so importing the package (and loading a
plugin's entry point, or ``deepclust --help``) pulls in no torch until a name is used.

In the package's ``__init__.py``::

    _LAZY = LazyExports(__name__, {"mypkg.losses": ("MyLoss", "my_loss")}, "__version__")
    __all__, __getattr__, __dir__ = _LAZY.names, _LAZY.getattr, _LAZY.dir
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any


class LazyExports:
    """The names ``modules`` maps from each defining module, exported by ``package``."""

    def __init__(self, package: str, modules: Mapping[str, Sequence[str]], *eager: str) -> None:
        self.package = package
        self.exports = {name: module for module, names in modules.items() for name in names}
        self.names = sorted([*self.exports, *eager])

    def module_of(self, name: str) -> str | None:
        """The module that defines exported ``name`` (None if it is not exported)."""
        return self.exports.get(name)

    def getattr(self, name: str) -> Any:
        """The package's ``__getattr__``: import ``name``'s module, keep the value."""
        if name not in self.exports:
            raise AttributeError(f"module {self.package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(self.exports[name]), name)
        setattr(sys.modules[self.package], name, value)
        return value

    def dir(self) -> list[str]:
        """The package's ``__dir__``."""
        return self.names
