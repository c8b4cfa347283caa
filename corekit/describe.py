"""What ``deepclust components KIND [NAME]`` says about a registered component: its plugin,
aliases, one-line description (with the paper equation its docstring cites), its options with
types and defaults, what it needs from the step and what it produces.

A listing (:func:`brief`) imports nothing: the summary of a factory registered as
``"module:attr"`` is read from its module's source. :func:`describe` imports the factory.
"""

from __future__ import annotations

import ast
import functools
import inspect
import typing
from pathlib import Path
from typing import Any

import corekit
from corekit.kinds import BY_NAME
from corekit.registry import Entry, find_module

# Context values to build a component with its defaults, so that its needs() and produces can
# be read off the object itself rather than restated in prose.
_PROBE_CONTEXT: dict[str, Any] = {"in_dim": 16, "in_channels": 1, "image_size": 8,
                                  "n_clusters": 4, "size": 8, "channels": 1, "mean": None,
                                  "std": None}


def _annotation(param: inspect.Parameter, hints: dict[str, Any]) -> str:
    hint = hints.get(param.name, param.annotation)
    if hint is inspect.Parameter.empty:
        return "any"
    text = getattr(hint, "__name__", None) if not typing.get_args(hint) else None
    return text or str(hint).replace("typing.", "")


def _default(param: inspect.Parameter) -> Any:
    if param.default is inspect.Parameter.empty:
        return "required"
    value = param.default
    return value if isinstance(value, (int, float, str, bool, type(None), list, tuple)) \
        else repr(value)


def options(entry: Entry) -> list[dict[str, Any]]:
    """The recipe options of ``entry``'s factory: name, type and default (its kind's context
    arguments left out: the composer supplies them)."""
    context_args = BY_NAME[entry.kind].context
    try:
        params = list(inspect.signature(entry.obj).parameters.values())
    except (TypeError, ValueError):
        return []
    if entry.is_prefix:
        params = params[1:]
    try:
        target = entry.obj.__init__ if inspect.isclass(entry.obj) else entry.obj
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    return [{"name": p.name, "type": _annotation(p, hints), "default": _default(p)}
            for p in params
            if p.name not in context_args and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def _probe(entry: Entry) -> Any | None:
    """The component built with its defaults, or None when it cannot be built that way."""
    if not BY_NAME[entry.kind].probed or entry.is_prefix:
        return None
    import torch  # not at module level: a listing imports no torch

    try:
        params = inspect.signature(entry.obj).parameters
        kwargs = {k: v for k, v in _PROBE_CONTEXT.items() if k in params}
        with torch.device("cpu"):
            return entry.obj(**kwargs)
    except Exception:
        return None


@functools.cache
def _module_source(module: str) -> ast.Module | None:
    """The parsed source of ``module``, which is not run (nor are its parent packages)."""
    try:
        return ast.parse(Path(find_module(module).origin).read_text(encoding="utf-8"))
    except Exception:  # no spec, no source file (an extension module), unreadable
        return None


def source_doc(module: str, attr: str) -> str:
    """The docstring of the class or function ``attr`` that ``module`` defines, read from its
    source (``corekit:Name`` from the module corekit exports it from); "" when not found."""
    if module == "corekit":
        module = corekit._LAZY.module_of(attr) or module
    tree = _module_source(module)
    for node in tree.body if tree else ():
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == attr:
            return ast.get_docstring(node) or ""
    return ""


def summary(entry: Entry) -> str:
    """The first paragraph of the factory's docstring, on one line (a lazy target's is read
    from its source, without importing it); "" for a recipe."""
    if entry.kind == "recipe":
        return ""
    target = entry.target
    doc = source_doc(target.module, target.attr) if entry.is_lazy \
        else inspect.getdoc(entry.obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def brief(entry: Entry) -> dict[str, Any]:
    """What a listing shows about one component; imports nothing."""
    return {"name": entry.name, "qualified": entry.qualified, "kind": entry.kind,
            "plugin": entry.plugin, "aliases": list(entry.aliases), "summary": summary(entry)}


def describe(entry: Entry) -> dict[str, Any]:
    """Everything about one component, as plain data (for ``--json``): :func:`brief` plus
    options, needs and produces; imports the factory."""
    listed = options(entry) if entry.kind != "recipe" else []  # imports a lazy target
    info = {**brief(entry), "options": listed}
    built = _probe(entry)
    needs = getattr(built, "needs", None)
    if callable(needs):
        info["needs"] = [need.describe() for need in needs()]
    produced = getattr(built, "produces", None)
    if produced is not None:
        info["produces"] = produced
    if entry.kind == "backbone":
        info["produces"] = "embedding"
    return info


def render(info: dict[str, Any]) -> list[str]:
    """The text lines of one component in ``deepclust components KIND NAME``."""
    lines = [f"{info['qualified']}  ({info['kind']} from plugin {info['plugin']!r})"]
    if info["aliases"]:
        lines.append(f"  aliases: {', '.join(info['aliases'])}")
    if info["summary"]:
        lines.append(f"  {info['summary']}")
    for option in info["options"]:
        lines.append(f"  option {option['name']}: {option['type']} = {option['default']!r}")
    if "needs" in info:
        lines.append(f"  needs: {'; '.join(info['needs']) or 'nothing'}")
    if "produces" in info:
        lines.append(f"  produces: {info['produces']}")
    return lines
