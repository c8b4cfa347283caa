"""Validation of a fully merged raw recipe into a ``Recipe``: the sections checked, the
``[[stage]]`` tables merged over them (with ``[stages.NAME]`` changes and ``drop`` lists),
each stage and each preset built (``corekit.recipe.conversion``)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import attrs

from corekit.errors import RecipeError, did_you_mean
from corekit.recipe.conversion import build, convert
from corekit.recipe.durations import parse_budget
from corekit.recipe.schema import Raw, Recipe, Stage
from corekit.recipe.tables import merge, stage_name
from corekit.recipe.variables import substitute, substitute_recipe, variables

META_KEYS = {"name", "description", "extends", "requires", "presets", "stage", "stages",
             "auto", "preset", "vars"}
"""The top-level keys that are not stage sections."""
META_TYPES: dict[str, Any] = {"extends": str, "preset": str, "auto": dict[str, Any]}
"""The types of the top-level keys that no other check reads before they are used: the recipe
a recipe extends, the preset applied and the ``auto`` recipe's record."""


def check_meta(raw: Raw) -> None:
    """Each key of ``META_TYPES`` that ``raw`` holds has its type."""
    for key, tp in META_TYPES.items():
        if key in raw:
            convert(raw[key], tp, key)


def _named_stage_overrides(raw: Raw) -> list[Raw]:
    """The ``[[stage]]`` tables with ``stages.<name>`` tables (from a preset or ``--set``)
    merged into the stage of that name, so a preset can change one stage."""
    stages = raw.get("stage", [])
    if not isinstance(stages, list) or not all(isinstance(t, Mapping) for t in stages):
        raise RecipeError("stage: expected [[stage]] tables (a list of tables)")
    stage_raws = [dict(t) for t in stages] or [{}]
    by_name = raw.get("stages", {})
    if not isinstance(by_name, Mapping):
        raise RecipeError("stages: expected a table of stage names, e.g. [stages.target.train]")
    names = [stage_name(stage_raws, i) for i in range(len(stage_raws))]
    for name, body in by_name.items():
        if name not in names:
            raise RecipeError(f"stages.{name}: no stage is called {name!r}; "
                              f"{did_you_mean(name, names)}")
        if not isinstance(body, Mapping):
            raise RecipeError(f"stages.{name}: expected a table")
        index = names.index(name)
        stage_raws[index] = merge(stage_raws[index], body)
    return stage_raws


def _drop(merged: Raw, where: str) -> Raw:
    """Remove each dotted path of the stage's ``drop`` list from its merged table."""
    drops = merged.get("drop", [])
    if not isinstance(drops, list) or not all(isinstance(d, str) for d in drops):
        raise RecipeError(f"{where + '.' if where else ''}drop: expected a list of dotted keys, "
                          'e.g. drop = ["losses.entropy"]')
    out = copy.deepcopy(merged)
    for dotted in drops:
        *parents, last = dotted.split(".")
        node: Any = out
        for key in parents:
            node = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(node, dict) or last not in node:
            raise RecipeError(f"{where + '.' if where else ''}drop: {dotted!r} is not in the "
                              "stage's recipe (nothing to drop)")
        del node[last]
    return out


def validate(raw: Raw) -> Recipe:
    """Validate a fully merged raw recipe into a ``Recipe`` with its stages: the vars used
    (``corekit.recipe.variables``), each stage built over the top-level sections, each preset
    checked the same way. ``Recipe.raw`` is the raw recipe with its vars used, which validates
    to the same recipe again (a run folder's ``recipe.toml``)."""
    check_meta(raw)
    raw = substitute_recipe(raw)
    sections = {k: v for k, v in raw.items() if k not in META_KEYS}
    stage_names = [f.name for f in attrs.fields(Stage)]
    for key in sections:
        if key not in stage_names:
            valid = stage_names + sorted(META_KEYS)
            raise RecipeError(f"{key}: unknown section; {did_you_mean(key, valid)}")
    for key in raw.get("presets", {}):
        if not isinstance(raw["presets"][key], Mapping):
            raise RecipeError(f"presets.{key}: expected a table")
    stage_raws = _named_stage_overrides(raw)
    stages = []
    for i, stage_raw in enumerate(stage_raws):
        where = f"stage[{i}]" if "stage" in raw else ""
        merged = _drop(merge(sections, stage_raw), where)
        if len(stage_raws) > 1 and merged.get("name", "main") == "main":
            merged["name"] = f"stage{i + 1}"
        stage = build(Stage, merged, where)
        for name, loss in stage.losses.items():
            if stage.train.epochs and loss.start_epoch >= stage.train.epochs:
                warnings.warn(f"{where + '.' if where else ''}losses.{name}.start_epoch = "
                              f"{loss.start_epoch} is past the last epoch "
                              f"({stage.train.epochs - 1}): the term never trains", stacklevel=2)
        if stage.train.budget is not None:
            parse_budget(stage.train.budget, f"{where + '.' if where else ''}train.budget")
        stages.append(stage)
    recipe = Recipe(
        name=convert(raw.get("name", "recipe"), str, "name"),
        description=convert(raw.get("description", ""), str, "description"),
        requires=convert(raw.get("requires", []), list[str], "requires"),
        stages=stages,
        raw=raw,
    )
    values = variables(raw)
    for preset, body in raw.get("presets", {}).items():
        where = f"presets.{preset}"
        own = merge(values, variables(body, where))
        table = merge(sections, {k: v for k, v in body.items() if k not in META_KEYS})
        build(Stage, substitute(table, own, where), where)
    return recipe
