"""The two directions of a two-view student/teacher step.

Direction (a→b) pairs the student (online branch) on view a with the teacher (EMA target
branch) on view b; (b→a) swaps the views. Every ProPos/HaDis loss is computed per direction
and averaged over both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from corekit import Step

DIRECTIONS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0))


def teacher_embedding(step: Step, head: str, view: int) -> torch.Tensor:
    """``k = n̂(teacher head output)`` on ``view``, normalised right after the teacher
    projector; no gradient (the target branch runs under no_grad)."""
    return F.normalize(step.output(head, view, branch="target"), dim=1)


def symmetric(term: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
    """``½[term(a, b) + term(b, a)]``; ``term(student_view, teacher_view)`` is one direction."""
    return sum(term(student, teacher) for student, teacher in DIRECTIONS) / len(DIRECTIONS)
