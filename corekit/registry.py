"""The component registry: one namespace per component kind, filled by plugins.

Names are looked up bare (``"dsa"``) or qualified by plugin (``"hadis.dsa"``). An alias is
the same entry under another paper's name. Registering a name twice is an error that names
both plugins; an unknown name is answered with the closest valid names. A name ending in
``":"`` is a prefix family: ``"timm:"`` serves ``"timm:resnet18"`` by passing the rest of
the name as the factory's first argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import attrs

from corekit.errors import ComponentError, did_you_mean

KINDS: dict[str, str] = {
    "backbone": "image batch -> feature vectors; factory(in_channels, **options) -> nn.Module",
    "augmentation": "float batch in [0,1] -> one view; factory(size, channels, mean, std, ...)",
    "head": "features -> what a loss reads; factory(in_dim, **options) -> nn.Module",
    "loss": "step -> scalar; factory(**options) -> Loss with needs()",
    "pseudo_labeler": "assignments/scores -> (labels, mask); factory(**options)",
    "clusterer": "features -> ClusterResult; factory(n_clusters, **options) with fit()",
    "state": "named training state; factory(**options) -> nn.Module with lifecycle hooks",
    "schedule": "lr factor per step; factory(steps_per_epoch, epochs, **options) with factor()",
    "optimizer": "factory(params, lr, weight_decay, **options) -> torch.optim.Optimizer",
    "sampler": "an epoch's image order; factory(**options) with order(n, count, generator, states)",
    "need": "a need kind's checker: check(need, ctx) -> None or what to add",
    "dataset": "a data set: loader(folder or None) -> ImageSet, used as --data NAME[:PATH]",
    "recipe": "a TOML recipe file; register(name, path)",
}


class RegisterFn(Protocol):
    """The callback a hook hands to a plugin."""

    def __call__(self, name: str, obj: Any, *, aliases: tuple[str, ...] = ()) -> None: ...


def register_recipe_dir(register: RegisterFn, folder: Path) -> list[str]:
    """Register every ``*.toml`` in ``folder`` as a recipe named by its file stem (a plugin's
    ``register_recipes`` hook is one call of this); returns the names, sorted."""
    paths = sorted(Path(folder).glob("*.toml"))
    for path in paths:
        register(path.stem, path)
    return [p.stem for p in paths]


@attrs.frozen
class Entry:
    """One registered component: its kind, public name, factory and the plugin it came from."""

    kind: str
    name: str
    obj: Any
    plugin: str
    aliases: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.plugin}.{self.name}"

    @property
    def is_prefix(self) -> bool:
        return self.name.endswith(":")


class Registry:
    """All registered components, by kind."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}

    def register(
        self, kind: str, name: str, obj: Any, *, plugin: str, aliases: tuple[str, ...] = ()
    ) -> Entry:
        """Add ``obj`` under ``name`` and each alias; a name taken by any plugin is an error."""
        if kind not in self._by_kind:
            raise ComponentError(f"unknown component kind {kind!r}; {did_you_mean(kind, KINDS)}")
        if not callable(obj) and kind != "recipe":
            raise ComponentError(f"{plugin}: {kind} {name!r} is not callable: {obj!r}")
        entry = Entry(kind=kind, name=name, obj=obj, plugin=plugin, aliases=tuple(aliases))
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
