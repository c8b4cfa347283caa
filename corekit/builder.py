"""Building one registered component from its recipe table, with its options checked."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Literal

import torch

from corekit import recipe as rc
from corekit.contracts import check_contract
from corekit.errors import ComponentError, RecipeError, did_you_mean
from corekit.kinds import BY_NAME
from corekit.plugins import Plugins
from corekit.registry import Entry


def _signature(entry: Entry) -> inspect.Signature:
    try:
        return inspect.signature(entry.obj)
    except (TypeError, ValueError):
        return inspect.Signature()


def allocation_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed allocation: a ``MemoryError``, torch's out-of-memory error,
    or the CPU allocator's ``RuntimeError`` ("can't allocate memory")."""
    return isinstance(exc, MemoryError | torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def takes_option(plugins: Plugins, kind: str, name: str, option: str) -> bool:
    """Whether the factory registered as ``kind`` ``name`` takes ``option`` (False when no
    such component is registered)."""
    if not plugins.registry.has(kind, name):
        return False
    return option in _signature(plugins.registry.get(kind, name)).parameters


def _hints(obj: Any) -> dict[str, Any]:
    try:
        target = obj.__init__ if inspect.isclass(obj) else obj
        return typing.get_type_hints(target)
    except Exception:
        return {}


def option_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit annotation ``hint`` (plain scalars and ``Literal``), or None."""
    basic = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}
    hint, _ = rc.unwrap_optional(hint)
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return None
        shown = " or ".join(repr(c) for c in choices)
        return f"{value!r} is not one of {shown}; " \
               f"{did_you_mean(str(value), [str(c) for c in choices])}"
    if hint in basic:
        if (isinstance(value, bool) and hint is not bool) or not isinstance(value, basic[hint]):
            return f"expected {hint.__name__}, got {value!r}"
    return None


def build_component(plugins: Plugins, kind: str, spec_type: str, options: dict[str, Any],
                    path: str, **context: Any) -> Any:
    """Look up ``spec_type`` and call its factory with the recipe ``options`` plus whichever
    ``context`` values (``in_channels``, ``n_clusters``, ...) its signature accepts; the result
    must fit the kind's protocol (``corekit.contracts``). ``context`` holds only the kind's
    context arguments (its row in ``corekit.kinds.TABLE``)."""
    context_args = BY_NAME[kind].context
    undeclared = sorted(set(context) - set(context_args))
    if undeclared:
        raise TypeError(f"build_component: {undeclared} are not context arguments of a {kind} "
                        f"({list(context_args)}); add them to its row in corekit/kinds.py")
    try:
        entry = plugins.registry.get(kind, spec_type)
    except ComponentError as exc:
        raise ComponentError(f"{path}.type: {exc}{plugins.failure_note()}") from None
    params = _signature(entry).parameters
    if entry.is_prefix:
        params = dict(list(params.items())[1:])
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    hints = _hints(entry.obj)
    for key, value in options.items():
        if key not in params and not accepts_any:
            valid = [k for k in params if k not in context_args]
            raise RecipeError(
                f"{path}.{key}: unknown option of {kind} {spec_type!r} ({entry.qualified}); "
                f"{did_you_mean(key, valid)}"
            )
        problem = option_problem(value, hints[key]) if key in hints else None
        if problem:
            raise RecipeError(f"{path}.{key}: {problem}")
    kwargs = {k: v for k, v in context.items() if k in params and k not in options}
    try:
        built = plugins.registry.build(kind, spec_type, **kwargs, **options)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{path}: cannot build {kind} {spec_type!r}: {exc}") from exc
    except ComponentError as exc:  # a factory's own check of an option (attrs validators)
        raise ComponentError(f"{path}: cannot build {kind} {spec_type!r}: {exc}") from None
    except (MemoryError, RuntimeError) as exc:
        if not allocation_failed(exc):
            raise
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RecipeError(f"{path}: cannot build {kind} {spec_type!r} with these options "
                          f"({reason}); lower the sizes in {path}") from None
    check_contract(kind, built, f"{path} ({entry.qualified})")
    return built
