"""Edits of raw recipe tables: ``merge`` (one recipe, preset or stage over another) and the
``--set KEY=VALUE`` overrides (``parse_override``, ``apply_override``)."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from typing import Any

from corekit.errors import RecipeError
from corekit.recipe.schema import Raw


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Raw:
    """Deep-merge ``over`` onto ``base`` (tables merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=5"`` -> (["train", "epochs"], 5); values are TOML, else plain strings."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=5")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip().split("."), parsed


def apply_override(raw: Raw, keys: list[str], value: Any) -> Raw:
    """Set ``keys`` to ``value`` in a copy of ``raw``; ``stage.N`` indexes the stage list."""
    if keys[0] == "stage" and not isinstance(raw.get("stage"), list):
        raise RecipeError(f"--set {'.'.join(keys)}: the recipe has no [[stage]] tables; set "
                          f"the key at the top level (--set {'.'.join(keys[2:]) or 'KEY'}=...)")
    out = copy.deepcopy(raw)
    node: Any = out
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise RecipeError(f"--set {'.'.join(keys)}: no stage {key!r} "
                                  f"(the recipe has {len(node)})")
            node = node[int(key)]
            continue
        nxt = node.get(key)
        if nxt is None:
            nxt = node[key] = {}
        elif not isinstance(nxt, (dict, list)):
            raise RecipeError(f"--set {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is not a table")
        node = nxt
    if isinstance(node, list):
        raise RecipeError(f"--set {'.'.join(keys)}: name a key inside the stage")
    node[keys[-1]] = value
    return out
