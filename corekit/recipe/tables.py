"""Edits of raw recipe tables: ``merge`` (one recipe, preset or stage over another) and the
``--set KEY=VALUE`` overrides (``parse_override``, ``apply_override``, ``apply_overrides``).

An override of a model part's ``type`` (``--set model.backbone.type=X``) that changes it
starts the part's table afresh: X's defaults plus the options set in the same command, never
the old type's options (``switch_type``)."""

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


TOML_MARKS = "[]{}\"'"
"""Characters that start or end a TOML array, table or quoted string: a ``--set`` value that
starts or ends with one is meant as TOML, never as a bare word."""


def require_utf8(text: str, option: str, remedy: str) -> None:
    """Refuse command-line text that is not UTF-8 (undecodable bytes reach Python as lone
    surrogates, which no recipe file can hold), naming ``option`` and the ``remedy``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = ord(text[exc.start]) & 0xFF
        raise RecipeError(f"{option} {text!r} is not valid UTF-8 (byte 0x{byte:02x}); "
                          f"{remedy}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=5"`` -> (["train", "epochs"], 5). A value is TOML; one that is not is
    a bare word, kept as a string (``augment.type=weak``, ``train.budget=10m``), unless it
    starts or ends like TOML (``TOML_MARKS``): broken TOML such as ``["weak",`` is an error,
    and so is text that is not UTF-8 (a recipe file could not hold it)."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=5")
    require_utf8(text, "--set", "write it in UTF-8 (a UTF-8 terminal, or \\u escapes in a "
                 "quoted string)")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        stripped = value.strip()
        if stripped and (stripped[0] in TOML_MARKS or stripped[-1] in TOML_MARKS):
            raise RecipeError(
                f"--set {text!r}: {stripped!r} is not a valid TOML value; write a list as "
                '["a", "b"], a table as {key = 1}, a quoted string as "text" (or a bare '
                "word: weak)") from None
        parsed = value
    return key.strip().split("."), parsed


SWITCHED = ("backbone", "encoders", "heads")
"""The ``model`` tables whose ``type`` override starts the part afresh."""
KEPT_ON_SWITCH = ("input",)
"""Keys of a part's table that are wiring, not the old type's options: kept on a switch."""


def is_type_switch(keys: list[str]) -> bool:
    """``keys`` names the ``type`` of a model part (``model.backbone.type``,
    ``model.heads.NAME.type``, ``model.encoders.NAME.type``, also under ``stage.N``)."""
    if keys[:1] == ["stage"]:
        keys = keys[2:]
    return (len(keys) >= 3 and keys[0] == "model" and keys[1] in SWITCHED
            and keys[-1] == "type" and len(keys) == (3 if keys[1] == "backbone" else 4))


def switch_type(raw: Raw, keys: list[str], value: Any) -> Raw:
    """``raw`` with the part at ``keys[:-1]`` set to type ``value``: a new table (only its
    ``KEPT_ON_SWITCH`` keys carried) when the type changes, else ``raw`` unchanged."""
    out = apply_override(raw, keys, value)
    node: Any = out
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    old: Any = raw
    for key in keys[:-1]:
        old = old[int(key)] if isinstance(old, list) else old.get(key, {})
    if isinstance(old, dict) and old.get("type") not in (None, value):
        kept = {k: node[k] for k in KEPT_ON_SWITCH if k in node}
        node.clear()
        node.update({"type": value, **kept})
    return out


def apply_overrides(raw: Raw, texts: list[str]) -> Raw:
    """Every ``--set`` of ``texts`` applied to ``raw``: type switches first (so options set in
    the same command stay, whatever their order), then the rest in order. ``stage.N.KEY`` is
    set as ``stages.NAME.KEY`` (``by_stage_name``), so it wins over a preset's change of that
    stage as any ``--set`` wins over the preset."""
    parsed = [parse_override(text) for text in texts]
    switches = [p for p in parsed if is_type_switch(p[0])]
    for keys, value in switches:
        raw = switch_type(raw, keys, value)
    for keys, value in parsed:
        if not is_type_switch(keys):
            raw = apply_override(raw, by_stage_name(raw, keys), value)
    return raw


def stage_name(stages: list[Any], index: int) -> str:
    """The name ``validate`` gives stage ``index`` of the raw ``[[stage]]`` tables ``stages``:
    its ``name``, else ``main`` when it is the only stage; among several, an unnamed stage (or
    one called ``main``) is ``stageN``, N = ``index + 1``."""
    table = stages[index] if isinstance(stages[index], Mapping) else {}
    name = str(table.get("name", "main"))
    return f"stage{index + 1}" if len(stages) > 1 and name == "main" else name


def by_stage_name(raw: Raw, keys: list[str]) -> list[str]:
    """``stage.N.REST`` as ``stages.NAME.REST``, NAME being stage N's name (``stage_name``);
    other keys, and a stage number the recipe does not have, unchanged."""
    stages = raw.get("stage")
    if keys[:1] != ["stage"] or len(keys) < 3 or not isinstance(stages, list) \
            or not keys[1].isdigit() or int(keys[1]) >= len(stages):
        return keys
    return ["stages", stage_name(stages, int(keys[1])), *keys[2:]]


def overrides_table(texts: list[str]) -> Raw:
    """The top-level ``--set`` values of ``texts`` as one nested table (``stage.N`` ones left
    out): what the user set, for a preset that must not override it."""
    out: Raw = {}
    for keys, value in map(parse_override, texts):
        if keys[0] != "stage":
            out = apply_override(out, keys, value)
    return out


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


def shadowed_overrides(raw: Raw, texts: list[str]) -> list[str]:
    """What a top-level ``--set KEY=VALUE`` of ``texts`` does not reach: a stage whose own
    table, or a preset's ``stages.NAME`` change of it, sets KEY to another value (a stage's
    table wins over the top level). One line each, with the ``--set stage.N.KEY`` that
    reaches it."""
    stages = raw.get("stage")
    if not isinstance(stages, list):
        return []
    changes = raw.get("stages", {}) if isinstance(raw.get("stages"), dict) else {}
    lines = []
    for keys, value in map(parse_override, texts):
        if keys[0] in ("stage", "stages"):
            continue
        for index, table in enumerate(stages):
            name = stage_name(stages, index)
            for source in (changes.get(name, {}), table):  # a preset's change wins
                held = _lookup(source, keys)
                if held is not _MISSING and held != value:
                    lines.append(f"--set {'.'.join(keys)}={value!r} does not reach stage "
                                 f"{name!r}, whose table sets it to {held!r}; use --set "
                                 f"stage.{index}.{'.'.join(keys)}=... for that stage")
                    break
    return lines


_MISSING = object()


def _lookup(table: Any, keys: list[str]) -> Any:
    """``table[k1][k2]...`` or ``_MISSING``."""
    for key in keys:
        if not isinstance(table, dict) or key not in table:
            return _MISSING
        table = table[key]
    return table
