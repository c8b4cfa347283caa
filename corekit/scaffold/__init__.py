"""``deepclust new-plugin NAME [--with head,state,clusterer]``: an installable plugin with an
example loss, optional example components, a recipe, tests and a README.

The templates are the ``*.tmpl`` files next to this module; ``{name}`` in them is replaced by
the plugin's name. ``plugin.py`` registers what was generated, the recipe uses it, and each
component has its own test file.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from corekit.errors import UserError, did_you_mean
from corekit.write_targets import check_target, writing

TEMPLATES = Path(__file__).parent
NAME = re.compile(r"[a-z][a-z0-9_]*")
MAX_NAME = 64
"""Longest plugin name: it names the package, its folder and its files."""
RESERVED = ("core",)


@attrs.frozen
class Component:
    """One example component: its module and class, the hook that registers it, and what the
    README says about it."""

    module: str
    cls: str
    hook: str
    kind: str
    summary: str


LOSS = Component("losses", "ScaledNTXent", "register_losses", "loss",
                 "NT-Xent (SimCLR Eq. 1) times `scale`: `scaled_nt_xent` and its adapter")
EXTRAS: dict[str, Component] = {
    "head": Component("heads", "CosineProjector", "register_heads", "head",
                      "an MLP projection head with unit-norm rows (`produces = \"unit\"`)"),
    "state": Component("state", "RunningCentre", "register_state_types", "state",
                       "a running mean of a head's output, updated after every optimizer "
                       "step (a buffer and the `after_optimizer_step` hook)"),
    "clusterer": Component("clusterers", "CosineKMeans", "register_clusterers", "clusterer",
                           "spherical k-means (`fit(features) -> ClusterResult`)"),
}
"""``--with`` choices, in the order they are generated."""


def parse_extras(values: Iterable[str] | None) -> list[str]:
    """``["head,state", "clusterer"]`` → the extras, in :data:`EXTRAS` order; an unknown one
    is a UserError with the nearest valid names."""
    wanted = {item.strip() for value in values or () for item in value.split(",")} - {""}
    for item in sorted(wanted):
        if item not in EXTRAS:
            raise UserError(f"--with {item!r} is not a component the scaffold can write; "
                            f"{did_you_mean(item, EXTRAS)} (choices: {', '.join(EXTRAS)})")
    return [extra for extra in EXTRAS if extra in wanted]


def _render(template: str, name: str, **fields: str) -> str:
    text = (TEMPLATES / template).read_text()
    for key, value in {"name": name, **fields}.items():
        text = text.replace("{" + key + "}", value)
    return text


def _plugin_module(name: str, extras: Sequence[str]) -> str:
    """``plugin.py``: each component registered lazily, as ``"deepclust_NAME.module:Class"``."""
    hooks = "".join(f"\n\n@hookimpl\ndef {EXTRAS[e].hook}(register: RegisterFn) -> None:\n"
                    f'    register("{name}_{e}", "deepclust_{name}.{EXTRAS[e].module}:'
                    f'{EXTRAS[e].cls}")\n' for e in extras)
    return _render("plugin.py.tmpl", name, hooks=hooks)


def _components_list(name: str, extras: Sequence[str]) -> str:
    rows = [(f"{name}_loss", LOSS)] + [(f"{name}_{e}", EXTRAS[e]) for e in extras]
    lines = [f"- {c.kind} `{registered}` (`deepclust_{name}/{c.module}.py`): {c.summary}"
             for registered, c in rows]
    lines.append(f"- recipe `{name}` (`deepclust_{name}/recipes/{name}.toml`): simclr-kmeans "
                 "with the components above")
    return "\n".join(lines)


def _check_name(name: str, taken: Iterable[str]) -> None:
    if not NAME.fullmatch(name):
        raise UserError(f"plugin name {name!r}: start with a lower-case letter and use only "
                        "lower-case letters, digits and '_' (it becomes the package "
                        f"deepclust_<name> and the prefix of the component names)")
    if len(name) > MAX_NAME:
        raise UserError(f"plugin name {name[:16]!r}... is {len(name)} characters long; use at "
                        f"most {MAX_NAME} (it names the package deepclust_<name>, its folder "
                        "and its files)")
    if name in RESERVED or name in set(taken):
        raise UserError(f"plugin name {name!r} is taken: a plugin of that name is already "
                        "loaded; choose another name")


def _write(root: Path, files: Mapping[Path, str]) -> None:
    """Create ``root`` (which must not exist) with ``files``; when a write fails, ``root`` is
    removed again and the failure is a UserError naming the path."""
    with writing("nothing was written; give --dir a folder you can write, with a short path"):
        if root.exists():
            raise UserError(f"{root} already exists; nothing was written (choose another name "
                            "or --dir, or remove the folder)")
        root.mkdir(parents=True)
        try:
            for path, text in files.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        except OSError:
            shutil.rmtree(root, ignore_errors=True)
            raise


def new_plugin(name: str, where: Path, extras: Iterable[str] = (),
               taken: Iterable[str] = ()) -> Path:
    """Write ``where/deepclust-plugin-NAME`` (``extras``: names of :data:`EXTRAS`); refuse a
    bad or ``taken`` plugin name, a ``where`` that is a file and an existing folder (a
    UserError; nothing is written)."""
    _check_name(name, taken)
    chosen = parse_extras(extras)
    check_target(Path(where), "--dir", True, "give --dir the folder to create the plugin in")
    root = Path(where) / f"deepclust-plugin-{name}"
    package = root / f"deepclust_{name}"
    note = f" ({', '.join(chosen)})" if chosen else ""
    files = {
        root / "pyproject.toml": _render("pyproject.toml.tmpl", name),
        root / "README.md": _render("README.md.tmpl", name,
                                    components=_components_list(name, chosen)),
        package / "__init__.py": _render("init.py.tmpl", name),
        package / "plugin.py": _plugin_module(name, chosen),
        package / "losses.py": _render("losses.py.tmpl", name),
        package / "recipes" / f"{name}.toml": _render("recipe.toml.tmpl", name, extras_note=note)
        + "".join(_render(f"recipe_{extra}.toml.tmpl", name) for extra in chosen),
        root / "tests" / "conftest.py": _render("conftest.py.tmpl", name),
        root / "tests" / f"test_{name}.py": _render("test.py.tmpl", name),
    }
    for extra in chosen:
        component = EXTRAS[extra]
        files[package / f"{component.module}.py"] = _render(f"{component.module}.py.tmpl", name)
        files[root / "tests" / f"test_{name}_{extra}.py"] = _render(f"test_{extra}.py.tmpl", name)
    _write(root, files)
    return root
