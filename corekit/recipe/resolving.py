"""From a recipe's name to a validated ``Recipe``: read the TOML file (``load_toml``), merge
its ``extends`` chain and the preset of the data set (``resolve_raw``, ``select_data``), apply
the ``auto`` preset and the ``--set`` overrides, then validate (``resolve``)."""

from __future__ import annotations

import tomllib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

from corekit.errors import RecipeError
from corekit.recipe.schema import Raw, Recipe
from corekit.recipe.tables import (
    apply_overrides,
    merge,
    overrides_table,
    require_utf8,
    shadowed_overrides,
)
from corekit.recipe.validation import check_meta, validate

AUTO, USER_SET = "auto", "set"
"""The raw recipe's key for the auto preset, and its entry with the ``--set`` values."""


def load_toml(path: Path) -> Raw:
    """A TOML file as a dict; a missing file, invalid UTF-8 (or a UTF-8 BOM, which TOML does not
    allow) and invalid TOML are RecipeErrors that say where."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise RecipeError(f"recipe file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise RecipeError(f"recipe file {path} is a folder, not a .toml file") from exc
    if data.startswith(b"\xef\xbb\xbf"):
        raise RecipeError(f"recipe file {path} starts with a UTF-8 BOM, which TOML does not "
                          "allow; save it as UTF-8 without BOM")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise RecipeError(f"recipe file {path} is not valid UTF-8 (byte "
                          f"0x{data[exc.start]:02x} on line {line}); save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe file {path} is not valid TOML: {exc}") from exc


def resolve_raw(name_or_path: str, find: Callable[[str], Path], data: str | None = None,
                _seen: tuple[str, ...] = ()) -> Raw:
    """The raw dict of a recipe with its ``extends`` chain merged in, resolved for ``data``.

    Each recipe of the chain is applied whole before its child: the parent (resolved for the
    data set, its preset included), then the child's own tables, then the child's preset for
    the data set. So a child's ``train.epochs = 3`` means 3 epochs under ``--data digits`` even
    when the parent's ``digits`` preset sets another value. ``presets`` holds every preset of
    the chain (for listing and validation); ``preset`` names the one applied.
    """
    if name_or_path in _seen:
        raise RecipeError(f"recipe {name_or_path!r} extends itself: {' -> '.join(_seen)}")
    path = Path(name_or_path) if name_or_path.endswith(".toml") else find(name_or_path)
    raw = load_toml(path)
    check_meta(raw)
    raw.setdefault("name", path.stem)
    parent = raw.pop("extends", None)
    own_presets = raw.pop("presets", {})
    if not isinstance(own_presets, Mapping):
        raise RecipeError(f"{path}: presets: expected a table of dataset names")
    for key, body in own_presets.items():
        if not isinstance(body, Mapping):
            raise RecipeError(f"{path}: presets.{key}: expected a table")
    if parent is None:
        out, presets = raw, dict(own_presets)
    else:
        base = resolve_raw(parent, find, data, (*_seen, name_or_path))
        presets = merge(base.pop("presets", {}), own_presets)
        out = merge(base, raw)
    key = dataset_key(data) if data else None
    if key is not None and isinstance(own_presets.get(key), Mapping):
        out = merge(out, own_presets[key])
        out["preset"] = key
    out["presets"] = presets
    return out


def dataset_key(data: str) -> str:
    """The preset key of a ``--data`` value: ``mnist:DIR`` -> ``mnist``."""
    return data.split(":", 1)[0]


def select_data(raw: Raw, data: str | None) -> Raw:
    """Merge the preset for ``data`` (if the recipe has one) and set ``data.name``."""
    presets = raw.get("presets", {})
    if data is None:
        return raw
    require_utf8(data, "--data", "rename the folder, or link it from a path with a UTF-8 name")
    key = dataset_key(data)
    out = dict(raw)
    if key in presets and raw.get("preset") != key:  # not yet applied by resolve_raw
        out = merge(raw, presets[key])
        out["preset"] = key
    return merge(out, {"data": {"name": data}})


def resolve(
    name_or_path: str,
    find: Callable[[str], Path],
    data: str | None = None,
    overrides: list[str] = (),  # type: ignore[assignment]
    auto: Callable[[Raw, Raw, str | None], Raw] | None = None,
    chosen: list[str] = (),  # type: ignore[assignment]
) -> Recipe:
    """Load, extend, pick the dataset preset, apply ``--set`` overrides and validate.
    ``chosen``: ``--set`` options applied before ``overrides``, as a command of their own (so
    an override's type switch starts that table afresh, as on any recipe): what the ``auto``
    recipe picked. ``auto(recipe, selected, data)`` may replace the selected raw recipe (the
    ``auto`` recipe's record, the ``auto`` preset of ``corekit.auto`` when no preset fits the
    data): it sees the overrides applied, and what they set under ``selected[AUTO][USER_SET]``
    so that it keeps them and says them; they are applied again after it. What it records
    under ``AUTO`` is kept (a recipe without it has no ``AUTO`` key)."""
    base = resolve_raw(name_or_path, find, data)
    raw = apply_overrides(apply_overrides(select_data(base, data), list(chosen)), list(overrides))
    if auto is not None:
        raw = auto(base, {**raw, AUTO: {USER_SET: overrides_table(list(overrides))}}, data)
        made = {k: v for k, v in raw[AUTO].items() if k != USER_SET}
        raw = {k: v for k, v in raw.items() if k != AUTO} | ({AUTO: made} if made else {})
        raw = apply_overrides(raw, list(overrides))
    for line in shadowed_overrides(raw, list(overrides)):
        warnings.warn(line, stacklevel=2)
    return validate(raw)
