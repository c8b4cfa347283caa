"""The ``BRANCH:PART`` grammar that names one output of one network of a stage.

``"proj"`` is part ``proj`` of the online network; ``"target:proj"`` is part ``proj`` of the
branch ``target`` (an EMA state). ``eval.assign`` adds ``"clusterer"`` and
``"head:[BRANCH:]NAME"``.
"""

from __future__ import annotations

from corekit.errors import RecipeError


def source_parts(source: str) -> tuple[str, str]:
    """``"target:proj"`` → ("target", "proj"); a bare name is on the online branch."""
    branch, name = source.split(":", 1) if ":" in source else ("online", source)
    return branch, name


def parse_feature(spec: str, path: str) -> tuple[str, str]:
    """``"target:proj"`` -> ("target", "proj"); a bare name means the online branch.
    ``path`` is the recipe key that holds ``spec``, named in the error."""
    if spec.count(":") > 1:
        raise RecipeError(f"{path}: {spec!r} must be 'PART' or 'BRANCH:PART'")
    return source_parts(spec)


def parse_assign(assign: str) -> tuple[str, str] | None:
    """``eval.assign``: None for ``"clusterer"``, else (branch, head) of
    ``"head:[BRANCH:]NAME"``."""
    if assign == "clusterer":
        return None
    if not assign.startswith("head:") or not assign[5:]:
        raise RecipeError(f"eval.assign: {assign!r} must be 'clusterer' or "
                          "'head:<name>' (or 'head:<branch>:<name>')")
    return parse_feature(assign[5:], "eval.assign")
