"""Durations in a recipe: ``train.budget = "10m"`` (and ``--budget``) read as seconds."""

from __future__ import annotations

import math
import re

from corekit.errors import RecipeError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_NUMBER = r"\d+(?:\.\d+)?"
_PART = re.compile(rf"({_NUMBER})([hms])")
_SECONDS = re.compile(_NUMBER)


def parse_budget(text: str | float | int, path: str = "train.budget") -> float:
    """``"10m"``, ``"1h30m"``, ``"90s"``, ``"2.5m"`` or a number of seconds (``90``, ``"90"``)
    → seconds (> 0)."""
    compact = str(text).strip().lower().replace(" ", "")
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    elif _SECONDS.fullmatch(compact):
        seconds = float(compact)
    else:
        parts = _PART.findall(compact)
        if not parts or "".join(n + u for n, u in parts) != compact:
            raise RecipeError(f"{path}: {text!r} is not a duration; write e.g. '10m', '1h30m', "
                              "'90s' or a number of seconds")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise RecipeError(f"{path}: {text!r} must be positive; write e.g. '10m', '90s' or 90 "
                          "(seconds)")
    return seconds
