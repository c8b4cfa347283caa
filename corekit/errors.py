"""User-facing errors: the CLI prints their message and exits with code 2 (no traceback)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake the user can fix; the message says what to do."""


class ComponentError(UserError):
    """Unknown, duplicate or ill-configured component."""


class RecipeError(UserError):
    """A recipe that does not validate; the message names the offending key path."""


class PluginError(UserError):
    """A plugin that is missing, refused or broken."""


class TrainingError(UserError):
    """Training cannot go on (non-finite loss, unreadable checkpoint)."""


class NonFiniteLoss(TrainingError):
    """A loss term or the weighted sum is NaN or infinite."""


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The valid names nearest to ``name``, best first (for 'did you mean' messages)."""
    pool = sorted(set(candidates))
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    return found or [c for c in pool if name and (name in c or c in name)][:n]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A short 'did you mean ...?' clause, or the list of valid names when none is close."""
    pool = sorted(set(candidates))
    near = closest(name, pool)
    if near:
        return "did you mean " + " or ".join(repr(c) for c in near) + "?"
    shown = ", ".join(pool[:12]) + (" ..." if len(pool) > 12 else "")
    return f"valid names: {shown}" if pool else "none are registered"
