"""From raw tables to schema objects: ``convert`` checks a value against a type annotation,
``build`` makes an attrs class of a table, running each field's check (``corekit.recipe.checks``)
and the option rules (``corekit.recipe.option_rules``) on the options. Every error names the key
path."""

from __future__ import annotations

import functools
import operator
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from corekit.errors import RecipeError, did_you_mean
from corekit.recipe.checks import field_check
from corekit.recipe.option_rules import check_option
from corekit.recipe.schema import COMPONENT_CLASSES


def join(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top."""
    return f"{path}.{key}" if path else key


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True), ``X | Y | None`` -> (X | Y, True); any other annotation ->
    (it, False)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return functools.reduce(operator.or_, rest), True
    return tp, False


def convert(value: Any, tp: Any, path: str) -> Any:
    """Validate ``value`` against annotation ``tp``; errors name ``path``."""
    tp, optional = unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise RecipeError(f"{path}: a value is required")
    origin = typing.get_origin(tp)
    if attrs.has(tp):
        if isinstance(value, str) and tp in COMPONENT_CLASSES:
            value = {"type": value}
        if not isinstance(value, Mapping):
            raise RecipeError(f"{path}: expected a table, got {value!r}")
        return build(tp, value, path)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for alt in typing.get_args(tp):
            try:
                return convert(value, alt, path)
            except RecipeError as exc:
                errors.append(str(exc))
        raise RecipeError(_union_error(value, typing.get_args(tp), errors, path))
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise RecipeError(f"{path}: expected a list, got {value!r}")
        return [convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise RecipeError(f"{path}: expected a table, got {value!r}")
        return {k: convert(v, item, f"{path}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            shown = " or ".join(repr(c) for c in choices)
            raise RecipeError(f"{path}: {value!r} is not one of {shown}; "
                              f"{did_you_mean(str(value), [str(c) for c in choices])}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise RecipeError(f"{path}: expected {tp.__name__}, got {value!r}")
    if not isinstance(value, tp):
        raise RecipeError(f"{path}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _expected(tp: Any) -> str:
    """What a value of annotation ``tp`` looks like in TOML, for an error message."""
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(c) for c in typing.get_args(tp))
    if attrs.has(tp) or typing.get_origin(tp) is dict:
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list"}.get(typing.get_origin(tp) or tp, str(tp))


def _union_error(value: Any, alternatives: tuple[Any, ...], errors: list[str], path: str
                 ) -> str:
    """The message for ``value`` matching none of ``alternatives`` (their ``errors``): the
    error from inside a table or list where the value got that far, else every alternative."""
    deeper = [e for e in errors if e.startswith((f"{path}.", f"{path}["))]
    if deeper:
        return deeper[0]
    shown = " or ".join(_expected(alt) for alt in alternatives)
    choices = [str(c) for alt in alternatives if typing.get_origin(alt) is Literal
               for c in typing.get_args(alt)]
    suggestion = did_you_mean(str(value), choices) if isinstance(value, str) else ""
    hint = f"; {suggestion}" if suggestion.startswith("did you mean") else ""
    return f"{path}: expected {shown}, got {type(value).__name__} {value!r}{hint}"


def build(cls: type, raw: Mapping[str, Any], path: str) -> Any:
    """Build attrs class ``cls`` from ``raw``: each field's value converted to its annotation
    and run through the field's check; in component tables the unknown keys are options, each
    run through the option rules. A class whose fields constrain one another checks them in
    ``check_across(given, path)`` (``given``: the keys the table set), run on the built value."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in attrs.fields(cls) if f.name != "options"}
    kwargs: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        here = join(path, key)
        if key in fields:
            kwargs[key] = convert(value, hints[key], here)
            check = field_check(fields[key])
            if check is not None and kwargs[key] is not None:
                check.check(kwargs[key], here)
        elif "options" in hints:
            check_option(cls, key, value, here)
            options[key] = value
        else:
            raise RecipeError(f"{here}: unknown key; {did_you_mean(key, list(fields))}")
    if "options" in hints:
        kwargs["options"] = options
    try:
        built = cls(**kwargs)
    except TypeError as exc:
        missing = [f.name for f in attrs.fields(cls)
                   if f.default is attrs.NOTHING and f.name not in kwargs]
        raise RecipeError(f"{path or 'recipe'}: missing required key(s) {missing}") from exc
    check_across = getattr(built, "check_across", None)
    if check_across is not None:
        check_across(set(raw), path)
    return built
