"""The component registry: one namespace per component kind, filled by plugins.

Names are looked up bare (``"dsa"``) or qualified by plugin (``"hadis.dsa"``). An alias is
the same entry under another paper's name. Registering a name twice is an error that names
both plugins; an unknown name is answered with the closest valid names. A name ending in
``":"`` is a prefix family: ``"timm:"`` serves ``"timm:resnet18"`` by passing the rest of
the name as the factory's first argument.

A factory may be registered as a ``"module:attr"`` string (a :class:`LazyTarget`): at
registration only the module's existence is checked (nothing is run); it is imported when the
component is first built or described, so that listing plugins and components imports no
component code (neither torch nor kornia nor timm). A target that fails to import is a
``ComponentError`` naming the plugin and the target.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from typing import Any, Protocol

import attrs

from corekit.errors import ComponentError, did_you_mean
from corekit.kinds import TABLE

KINDS: dict[str, str] = {kind.name: kind.summary for kind in TABLE}
"""Each kind's name and one-line summary, read off ``corekit.kinds.TABLE``."""


class RegisterFn(Protocol):
    """The callback a hook hands to a plugin: ``obj`` is a factory or a ``"module:attr"``
    target (a recipe's path for recipes)."""

    def __call__(self, name: str, obj: Any, *, aliases: tuple[str, ...] = ()) -> None: ...


def register_recipe_dir(register: RegisterFn, folder: Path) -> list[str]:
    """Register every ``*.toml`` in ``folder`` as a recipe named by its file stem (a plugin's
    ``register_recipes`` hook is one call of this); returns the names, sorted."""
    paths = sorted(Path(folder).glob("*.toml"))
    for path in paths:
        register(path.stem, path)
    return [p.stem for p in paths]


def find_module(module: str) -> ModuleSpec | None:
    """Where ``module`` is, found without running it or its parent packages (None if not)."""
    if module in sys.modules:
        return sys.modules[module].__spec__
    parent = module.rpartition(".")[0]
    if not parent:
        return importlib.util.find_spec(module)
    above = find_module(parent)
    if above is None or above.submodule_search_locations is None:
        return None
    return PathFinder.find_spec(module, list(above.submodule_search_locations))


_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
TARGET = re.compile(rf"(?P<module>{_DOTTED}):(?P<attr>{_DOTTED})")
"""A lazy target: ``package.module:attr`` (``attr`` may be dotted: ``module:Class.method``)."""
_UNLOADED = object()


@attrs.define
class LazyTarget:
    """A factory registered as ``"module:attr"``, imported on first use and then kept."""

    spec: str
    _value: Any = attrs.field(default=_UNLOADED, init=False, repr=False, eq=False)

    @classmethod
    def parse(cls, spec: str, where: str) -> LazyTarget:
        """The target of ``spec``; a malformed spec or a module that cannot be found is a
        ComponentError starting with ``where`` (the module is found, not imported)."""
        if not TARGET.fullmatch(spec):
            raise ComponentError(f"{where}: target {spec!r} is not 'package.module:attr'")
        target = cls(spec)
        if find_module(target.module) is None:
            raise ComponentError(f"{where}: target {spec!r}: no module named {target.module!r}")
        return target

    @property
    def module(self) -> str:
        return self.spec.split(":", 1)[0]

    @property
    def attr(self) -> str:
        return self.spec.split(":", 1)[1]

    @property
    def loaded(self) -> bool:
        return self._value is not _UNLOADED

    def load(self) -> Any:
        """Import the module and return the attribute (the same object on every call)."""
        if not self.loaded:
            value: Any = importlib.import_module(self.module)
            for part in self.attr.split("."):
                value = getattr(value, part)
            self._value = value
        return self._value


@attrs.frozen
class Entry:
    """One registered component: its kind, public name, factory (or :class:`LazyTarget`) and
    the plugin it came from."""

    kind: str
    name: str
    target: Any
    plugin: str
    aliases: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.plugin}.{self.name}"

    @property
    def is_lazy(self) -> bool:
        """Registered as ``"module:attr"`` and not imported yet."""
        return isinstance(self.target, LazyTarget) and not self.target.loaded

    @property
    def obj(self) -> Any:
        """The factory; a lazy target is imported now, a failure is a ComponentError naming
        the plugin and the target."""
        if not isinstance(self.target, LazyTarget):
            return self.target
        where = f"plugin {self.plugin!r}: {self.kind} {self.name!r} (target {self.target.spec!r})"
        try:
            obj = self.target.load()
        except Exception as exc:
            raise ComponentError(f"{where} cannot be imported: {type(exc).__name__}: {exc}"
                                 ) from exc
        if not callable(obj):
            raise ComponentError(f"{where} is not callable: {obj!r}")
        return obj

    @property
    def is_prefix(self) -> bool:
        return self.name.endswith(":")


def _target(kind: str, name: str, obj: Any, plugin: str) -> Any:
    """What an entry keeps for ``obj``: a recipe's path as given, a string as a LazyTarget,
    anything else if it is callable."""
    where = f"{plugin}: {kind} {name!r}"
    if kind == "recipe" or isinstance(obj, LazyTarget):
        return obj
    if isinstance(obj, str):
        return LazyTarget.parse(obj, where)
    if not callable(obj):
        raise ComponentError(f"{where} is not callable: {obj!r}")
    return obj


class Registry:
    """All registered components, by kind."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}

    def register(
        self, kind: str, name: str, obj: Any, *, plugin: str, aliases: tuple[str, ...] = ()
    ) -> Entry:
        """Add ``obj`` (a factory, a ``"module:attr"`` target, or a recipe's path) under
        ``name`` and each alias; a name taken by any plugin is an error."""
        if kind not in self._by_kind:
            raise ComponentError(f"unknown component kind {kind!r}; {did_you_mean(kind, KINDS)}")
        entry = Entry(kind=kind, name=name, target=_target(kind, name, obj, plugin),
                      plugin=plugin, aliases=tuple(aliases))
        table = self._by_kind[kind]
        for key in (name, *aliases):
            if "." in key:
                raise ComponentError(
                    f"{plugin}: {kind} name {key!r} may not contain '.'; "
                    "the dot separates plugin and name"
                )
            if key in table:
                other = table[key]
                raise ComponentError(
                    f"{kind} {key!r} is registered twice: by plugin {other.plugin!r} "
                    f"(as {other.qualified}) and by plugin {plugin!r}. Rename one of them, "
                    "or disable a plugin with DEEPCLUST_DISABLE_PLUGINS."
                )
        for key in (name, *aliases):
            table[key] = entry
        return entry

    def get(self, kind: str, name: str) -> Entry:
        """The entry for a bare, aliased, plugin-qualified or prefixed name."""
        table = self._by_kind[kind]
        bare = name
        if "." in name and not name.split(".", 1)[0].endswith(":"):
            plugin, bare = name.split(".", 1)
            entry = table.get(bare)
            if entry is not None and entry.plugin == plugin:
                return entry
            raise ComponentError(
                f"unknown {kind} {name!r}; {did_you_mean(name, self.qualified_names(kind))}"
            )
        if bare in table:
            return table[bare]
        if ":" in bare:
            prefix = bare.split(":", 1)[0] + ":"
            if prefix in table:
                return table[prefix]
        raise ComponentError(f"unknown {kind} {name!r}; {did_you_mean(name, table)}")

    def build(self, kind: str, name: str, *args: Any, **options: Any) -> Any:
        """Call the factory of ``name``; a prefix family gets the rest of the name first."""
        entry = self.get(kind, name)
        if entry.is_prefix:
            return entry.obj(name.split(":", 1)[1], *args, **options)
        return entry.obj(*args, **options)

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        """Each entry once (aliases folded), in registration order."""
        kinds = [kind] if kind else list(self._by_kind)
        for k in kinds:
            seen: set[int] = set()
            for entry in self._by_kind[k].values():
                if id(entry) not in seen:
                    seen.add(id(entry))
                    yield entry

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def qualified_names(self, kind: str) -> list[str]:
        return sorted(f"{e.plugin}.{key}" for key, e in self._by_kind[kind].items())

    def has(self, kind: str, name: str) -> bool:
        try:
            self.get(kind, name)
        except ComponentError:
            return False
        return True

    def callback(self, kind: str, plugin: str) -> Callable[..., None]:
        """The ``register`` function handed to ``plugin``'s hook for ``kind``."""

        def register(name: str, obj: Any, *, aliases: tuple[str, ...] = ()) -> None:
            self.register(kind, name, obj, plugin=plugin, aliases=tuple(aliases))

        return register
