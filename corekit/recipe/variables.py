"""``[vars]``: a value stated once and used in several places.

A string that is exactly ``"${NAME}"``, at any depth of a recipe (in lists, ``[[stage]]``,
``[stages.NAME]`` and preset tables too), stands for the value of ``vars.NAME``, its type kept:
``start_epoch = "${warmup}"`` with ``[vars] warmup = 50`` is the integer 50. ``vars`` merges
like any table (a preset's or a child recipe's ``vars`` wins; ``--set vars.warmup=5`` changes
every use), and ``validate`` substitutes once everything is merged. A var's value may not
itself use a var, so a substituted recipe holds no ``"${...}"`` and validates to the same
stages again."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from corekit.errors import RecipeError, did_you_mean
from corekit.recipe.schema import Raw

REFERENCE = re.compile(r"\$\{([^{}]*)\}")
"""A use of a var: the whole string is ``${NAME}``."""


def _uses(node: Any) -> list[str]:
    """Every ``"${NAME}"`` string inside ``node``."""
    if isinstance(node, str):
        return [node] if REFERENCE.fullmatch(node) else []
    if isinstance(node, Mapping):
        return [use for value in node.values() for use in _uses(value)]
    if isinstance(node, list):
        return [use for value in node for use in _uses(value)]
    return []


def variables(table: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """The ``vars`` table of ``table`` (a recipe or a preset at ``path``), checked: a table
    whose values use no var."""
    where = f"{path}.vars" if path else "vars"
    found = table.get("vars", {})
    if not isinstance(found, Mapping):
        raise RecipeError(f"{where}: expected a table of values, e.g. [vars] warmup = 50")
    for name, value in found.items():
        if _uses(value):
            raise RecipeError(f"{where}.{name}: {_uses(value)[0]!r} uses a var inside [vars]; "
                              "write the value itself")
    return dict(found)


def substitute(node: Any, values: Mapping[str, Any], path: str) -> Any:
    """``node`` (at key path ``path``) with every ``"${NAME}"`` string replaced by a copy of
    ``values[NAME]``; an unknown NAME is an error naming the key path."""
    if isinstance(node, str):
        match = REFERENCE.fullmatch(node)
        if match is None:
            return node
        name = match.group(1)
        if name not in values:
            known = (did_you_mean(name, values) if values
                     else "the recipe has no [vars] table")
            raise RecipeError(f"{path}: {node!r} names no entry of [vars]; {known}")
        return copy.deepcopy(values[name])
    if isinstance(node, Mapping):
        return {k: substitute(v, values, f"{path}.{k}" if path else k) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def substitute_recipe(raw: Raw) -> Raw:
    """``raw`` with its ``vars`` used everywhere but in ``vars`` itself and in ``presets``
    (``validate`` checks each preset with its own ``vars`` merged over these)."""
    values = variables(raw)
    kept = ("vars", "presets")
    return {k: v if k in kept else substitute(v, values, k) for k, v in raw.items()}
