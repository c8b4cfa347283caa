"""Stages whose saved outputs were trained on an earlier stage's outputs that have since been
retrained (``--stage NAME``): marked stale, so that ``--resume`` retrains them and
``deepclust show RUN`` says so."""

from __future__ import annotations

from pathlib import Path

STALE_FILE = "STALE"


def mark_stale(folder: Path, retrained: str) -> None:
    """Mark the stage saved in ``folder`` stale: stage ``retrained`` before it was rerun."""
    (folder / STALE_FILE).write_text(
        f"stage {retrained!r} was retrained after this stage trained on its earlier outputs; "
        "retrain this stage with --resume (or --stage NAME)\n")


def is_stale(folder: Path) -> bool:
    """Whether the stage saved in ``folder`` is marked stale."""
    return (folder / STALE_FILE).exists()


def stale_reason(folder: Path) -> str | None:
    """Why the stage in ``folder`` is stale, or None."""
    path = folder / STALE_FILE
    return path.read_text().strip() if path.exists() else None


def clear_stale(folder: Path) -> None:
    """The stage in ``folder`` is being retrained: it is no longer stale."""
    (folder / STALE_FILE).unlink(missing_ok=True)
