"""Loading plugins: the core's built-ins first, then every ``deepclust`` entry point.

Each plugin registers into a staging area first and is merged whole, so a plugin that fails to
import, raises in a hook, or claims a name another plugin owns is reported and skipped without
leaving half its components behind, and never breaks the tool. ``DEEPCLUST_PLUGINS`` (comma
list) loads only the named plugins; ``DEEPCLUST_DISABLE_PLUGINS`` skips the named ones.
"""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pluggy

from corekit import hookspecs
from corekit.errors import ComponentError, PluginError, RecipeError, did_you_mean
from corekit.kinds import TABLE
from corekit.registry import Entry, Registry

ENTRY_POINT_GROUP = "deepclust"
CORE = "core"
HOOKS: dict[str, str] = {kind.name: kind.hook for kind in TABLE}
"""The hook each kind is registered through, read off ``corekit.kinds.TABLE``."""


@attrs.frozen
class PluginInfo:
    """What ``deepclust plugins`` reports about one plugin."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    status: str  # "loaded", "failed", "disabled"
    error: str | None = None
    components: dict[str, list[str]] = attrs.field(factory=dict)

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class Plugins:
    """The loaded plugin set: the registry plus what each plugin is and what it registered."""

    registry: Registry
    info: list[PluginInfo]

    def plugin(self, name: str) -> PluginInfo | None:
        return next((p for p in self.info if p.name == name), None)

    def versions(self) -> dict[str, str | None]:
        return {p.name: p.version for p in self.info if p.status == "loaded"}

    def get(self, kind: str, name: str) -> Entry:
        """The entry of ``name``; an unknown name's error also names the plugins that failed
        to load."""
        try:
            return self.registry.get(kind, name)
        except ComponentError as exc:
            raise ComponentError(f"{exc}{self.failure_note()}") from None

    def find_recipe(self, name: str) -> Path:
        """The TOML file of registered recipe ``name``; unknown names suggest neighbours."""
        try:
            return Path(self.registry.get("recipe", name).obj)
        except ComponentError:
            names = self.registry.names("recipe")
            raise RecipeError(f"unknown recipe {name!r}; {did_you_mean(name, names)} "
                              f"(or pass a path to a .toml file){self.failure_note()}") from None

    def datasets(self) -> Mapping[str, Any]:
        """Every registered dataset loader by name (aliases included), for ``load_dataset``;
        a loader is imported when it is looked up."""
        return _Loaders(self.registry)

    def failures(self) -> list[PluginInfo]:
        return [p for p in self.info if p.status == "failed"]

    def failure_note(self) -> str:
        """A sentence about plugins that failed to load, to append to 'unknown name' errors."""
        failed = self.failures()
        if not failed:
            return ""
        names = ", ".join(p.name for p in failed)
        return f" (note: plugin(s) {names} failed to load; run `deepclust plugins` for why)"


@attrs.frozen
class _Loaders(Mapping[str, Any]):
    """The registered datasets as a read-only mapping that imports a loader on lookup."""

    registry: Registry

    def __getitem__(self, name: str) -> Any:
        if not self.registry.has("dataset", name):
            raise KeyError(name)
        return self.registry.get("dataset", name).obj

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry.names("dataset"))

    def __len__(self) -> int:
        return len(self.registry.names("dataset"))


def _split_env(name: str) -> set[str]:
    return {p.strip() for p in os.environ.get(name, "").split(",") if p.strip()}


def _collect(module: ModuleType, pm: pluggy.PluginManager, plugin: str) -> list[tuple]:
    """Call each of ``module``'s hook implementations with a recording ``register``."""
    calls: list[tuple] = []
    for kind, hook_name in HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin is not module:
                continue

            def register(name: str, obj: Any, *, aliases: tuple[str, ...] = (), _k=kind) -> None:
                calls.append((_k, name, obj, tuple(aliases)))

            impl.function(register=register)
    return calls


def _merge(registry: Registry, plugin: str, calls: list[tuple]) -> dict[str, list[str]]:
    """Register ``calls`` all or nothing; a clash raises ComponentError naming both plugins."""
    trial = Registry()
    for entry in registry.entries():
        trial.register(entry.kind, entry.name, entry.target, plugin=entry.plugin,
                       aliases=entry.aliases)
    for kind, name, obj, aliases in calls:
        trial.register(kind, name, obj, plugin=plugin, aliases=aliases)
    components: dict[str, list[str]] = {}
    for kind, name, obj, aliases in calls:
        registry.register(kind, name, obj, plugin=plugin, aliases=aliases)
        components.setdefault(kind, []).append(name)
        components[kind].extend(aliases)
    return components


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load_plugins(extra: Iterable[tuple[str, ModuleType]] = ()) -> Plugins:
    """Load the core, every installed plugin, and ``extra`` (name, module) pairs (for tests)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    info: list[PluginInfo] = []
    allow, deny = _split_env("DEEPCLUST_PLUGINS"), _split_env("DEEPCLUST_DISABLE_PLUGINS")

    def add(name: str, module_name: str, load, dist: str | None, version: str | None) -> None:
        if name != CORE and ((allow and name not in allow) or name in deny):
            info.append(PluginInfo(name, module_name, dist, version, "disabled"))
            return
        try:
            module = load()
            pm.register(module, name=name)
            pm.check_pending()
        except Exception as exc:  # a broken plugin is reported, never fatal
            if pm.has_plugin(name):
                pm.unregister(name=name)
            info.append(PluginInfo(name, module_name, dist, version, "failed", _describe(exc)))
            return
        try:
            components = _merge(registry, name, _collect(module, pm, name))
        except ComponentError as exc:
            info.append(PluginInfo(name, module_name, dist, version, "failed", str(exc)))
            return
        except Exception as exc:
            info.append(PluginInfo(name, module_name, dist, version, "failed", _describe(exc)))
            return
        info.append(PluginInfo(name, module_name, dist, version, "loaded", None, components))

    add(CORE, "corekit.builtins", lambda: importlib.import_module("corekit.builtins"),
        "deepclust", _version("deepclust"))
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist else None
        add(ep.name, ep.value, ep.load, dist, ep.dist.version if ep.dist else None)
    for name, module in extra:
        add(name, module.__name__, lambda m=module: m, None, None)
    return Plugins(registry=registry, info=info)


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


_LOADED: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin set, loaded once."""
    global _LOADED
    if _LOADED is None:
        _LOADED = load_plugins()
    return _LOADED


def check_requirements(requires: Iterable[str], plugins: Plugins, recipe: str) -> None:
    """Fail with the pip command to run when a recipe's required plugin is absent or too old.

    A requirement is ``"name"`` or ``"name>=X.Y"`` (``>=`` and ``==`` are understood).
    """
    for req in requires:
        name, op, want = _parse_requirement(req)
        found = plugins.plugin(name)
        dist = f"deepclust-plugin-{name}"
        if found is None or found.status == "disabled":
            state = "is disabled" if found else "is not installed"
            raise PluginError(
                f"recipe {recipe!r} needs plugin {name!r}, which {state}. "
                f"Install it with `pip install {dist}` (in this repository: "
                f"`pip install ./plugins/{name}`)"
                + (", and allow it in DEEPCLUST_PLUGINS / DEEPCLUST_DISABLE_PLUGINS."
                   if found else ".")
            )
        if found.status == "failed":
            raise PluginError(
                f"recipe {recipe!r} needs plugin {name!r}, which failed to load: {found.error}"
            )
        if op and found.version and not _satisfies(found.version, op, want):
            raise PluginError(
                f"recipe {recipe!r} needs {name}{op}{want} but {found.version} is installed; "
                f"run `pip install -U '{dist}{op}{want}'`."
            )


def _parse_requirement(req: str) -> tuple[str, str, str]:
    for op in (">=", "=="):
        if op in req:
            name, want = req.split(op, 1)
            return name.strip(), op, want.strip()
    return req.strip(), "", ""


def _satisfies(version: str, op: str, want: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in v.split("."))

    return key(version) >= key(want) if op == ">=" else key(version) == key(want)
