"""A raw recipe as TOML text, for ``deepclust show`` and a run folder's ``recipe.toml``
(``load_toml`` reads it back to the same tables)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}
_ESCAPED = re.compile(r'[\\"\x00-\x1f\x7f]')
"""What a TOML basic string escapes: backslash, quote and the control characters."""


def _quoted(text: str) -> str:
    """``text`` as a TOML basic string."""
    return '"' + _ESCAPED.sub(
        lambda m: _ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), text) + '"'


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, Mapping) for x in value)


def to_toml(raw: Mapping[str, Any]) -> str:
    """Render a raw recipe as TOML (for ``deepclust show`` and the run directory)."""
    lines: list[str] = []

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else scalar(k)

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return _quoted(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{key(k)} = {scalar(x)}" for k, x in v.items()) + " }"
        return repr(v)

    def table(node: Mapping[str, Any], prefix: str) -> None:
        flat = {k: v for k, v in node.items()
                if not isinstance(v, Mapping) and not _is_table_list(v)}
        if flat or not prefix:
            if prefix:
                lines.append(f"\n[{prefix}]")
            lines.extend(f"{key(k)} = {scalar(v)}" for k, v in flat.items())
        for k, v in node.items():
            if isinstance(v, Mapping):
                table(v, f"{prefix}.{key(k)}" if prefix else key(k))
            elif _is_table_list(v):
                for item in v:
                    lines.append(f"\n[[{prefix + '.' if prefix else ''}{k}]]")
                    sub = {a: b for a, b in item.items() if not isinstance(b, Mapping)}
                    lines.extend(f"{key(a)} = {scalar(b)}" for a, b in sub.items())
                    for a, b in item.items():
                        if isinstance(b, Mapping):
                            lines.append(f"{key(a)} = {scalar(b)}")

    table(raw, "")
    return "\n".join(lines).strip() + "\n"
