"""Per-epoch records: one JSON line each in ``metrics.jsonl``, and TensorBoard when installed."""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Any

FILE = "metrics.jsonl"


def _record(line: str) -> dict[str, Any] | None:
    try:
        found = json.loads(line)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The epoch records of the run in ``run_dir``, in the order written (none: ``[]``). A
    line that is no record (the torn last line a kill during a write leaves) is skipped with a
    warning."""
    path = run_dir / FILE
    if not path.exists():
        return []
    lines = [(n, line) for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if line.strip()]
    records = [(n, _record(line)) for n, line in lines]
    torn = [str(n) for n, record in records if record is None]
    if torn:
        # stacklevel 1: one place warns, so a file read twice in a command is named once
        warnings.warn(f"{path}: skipped line {', '.join(torn)} (not a JSON record: a write "
                      "that did not finish, or an edit)", stacklevel=1)
    return [record for _, record in records if record is not None]


def _line_start(path: Path) -> str:
    """What goes before a record appended to ``path``: a newline after a torn last line (a kill
    during a write), so that the record is a line of its own."""
    if not path.exists() or path.stat().st_size == 0:
        return ""
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return "" if fh.read(1) == b"\n" else "\n"


def _epoch_key(record: dict[str, Any]) -> tuple[Any, Any]:
    return record.get("stage"), record.get("epoch")


class MetricsLog:
    """Appends epoch records to ``run_dir/metrics.jsonl``; mirrors numeric values to
    TensorBoard (``run_dir/tensorboard``) when the ``tensorboard`` package is importable."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / FILE
        self._epochs = {_epoch_key(record) for record in read_metrics(run_dir)}
        self._writer = None
        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any], step: int) -> None:
        """Append ``record``; a record of the same stage and epoch (an epoch re-run after a
        resume) replaces the earlier one, so each epoch is in the file once. The file is read
        again only then, not at every epoch."""
        key = _epoch_key(record)
        if key in self._epochs:
            kept = [r for r in read_metrics(self.run_dir) if _epoch_key(r) != key]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        start = _line_start(self.path)
        with open(self.path, "a") as fh:
            fh.write(start + json.dumps(record) + "\n")
        self._epochs.add(key)
        if self._writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(f"{record.get('stage', 'main')}/{key}", value, step)
        self._writer.flush()
