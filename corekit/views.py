"""View names: how a step, a need and the composer address one augmented view of a batch.

A stage's views are an ordered mapping name -> pipeline (``Composed.views``) and, per step,
name -> tensor (``Step.views``). ``augment.views = N`` names them 0..N-1;
``[augment.views.NAME]`` tables name them by word, in recipe order. Whoever reads a view gives
a name or a position: ``view_key`` turns either into the mapping's key, so view 0 is the first
named view, and a reader written for numbered views reads named ones too.
"""

from __future__ import annotations

from collections.abc import Sequence

from corekit.errors import did_you_mean

ViewName = int | str
"""A view's name: its number 0..N-1 under ``augment.views = N``, else its table name."""


def view_key(names: Sequence[ViewName], view: ViewName) -> ViewName:
    """The key of ``view`` among the stage's view ``names`` (in order): a name as it is, a
    number as the name at that position. Raises ``KeyError`` with what the recipe lacks."""
    if view in names:
        return view
    if isinstance(view, int) and 0 <= view < len(names):
        return names[view]
    raise KeyError(missing_view(names, view))


def missing_view(names: Sequence[ViewName], view: ViewName) -> str:
    """Why ``view`` is not among ``names``, naming ``augment.views`` and what to write."""
    words = [n for n in names if isinstance(n, str)]
    if isinstance(view, int):
        fix = (f"set augment.views = {view + 1}" if not words
               else f"it names {len(names)}: {', '.join(words)}")
        return f"augment.views: no view {view}; {fix}"
    if not words:
        return (f"augment.views: no view {view!r}; the {len(names)} views are numbered "
                f"0..{len(names) - 1} (name views with [augment.views.{view}] tables)")
    return f"augment.views: no view {view!r}; {did_you_mean(view, words)}"


def stream_view(entry: str) -> tuple[str, ViewName]:
    """``"STREAM:VIEW"`` (a ``train.concat`` entry) as (stream, view): the view a number
    where it is written as one (a position), else its name."""
    stream, _, view = entry.partition(":")
    return stream, int(view) if view.isdigit() else view
