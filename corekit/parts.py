"""The ``BRANCH:PART`` grammar that names one output of one network of a stage.

``"proj"`` is part ``proj`` of the online network; ``"target:proj"`` is part ``proj`` of the
branch ``target`` (an EMA state). ``eval.assign`` adds ``"clusterer"``,
``"head:[BRANCH:]NAME"`` and ``"head:NAME@STATE"``: the one head that state ``STATE`` (a
``selection``) keeps of the stacked heads of part ``NAME``, read as the branch ``STATE``.
"""

from __future__ import annotations

from corekit.errors import RecipeError
from corekit.needs import Need

SELECTED = "@"


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
    ``"head:[BRANCH:]NAME"``, or (STATE, NAME) of ``"head:NAME@STATE"``."""
    if assign == "clusterer":
        return None
    if not assign.startswith("head:") or not assign[5:]:
        raise RecipeError(f"eval.assign: {assign!r} must be 'clusterer' or "
                          "'head:<name>' (or 'head:<branch>:<name>', or 'head:<name>@<state>' "
                          "for the head a selection state keeps)")
    spec = assign[5:]
    if SELECTED not in spec:
        return parse_feature(spec, "eval.assign")
    part, _, state = spec.partition(SELECTED)
    if not part or not state or ":" in spec or SELECTED in state:
        raise RecipeError(f"eval.assign: {assign!r} must be 'head:<name>@<state>': a part of the "
                          "online network and the [state.NAME] that selects one of its heads")
    return state, part


def assign_need(assign: str) -> Need | None:
    """What ``eval.assign`` reads (None for ``"clusterer"``): a head's scores, or the head
    that a selection state keeps."""
    assigned = parse_assign(assign)
    if assigned is None:
        return None
    branch, head = assigned
    if SELECTED in assign:
        return Need.selected(head, branch)
    return Need.output(head, branch, reads="scores")
