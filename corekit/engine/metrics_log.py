"""Per-epoch records: one JSON line each in ``metrics.jsonl``, and TensorBoard when installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

FILE = "metrics.jsonl"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The epoch records of the run in ``run_dir``, in the order written (none: ``[]``)."""
    path = run_dir / FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        self._epochs.add(key)
        if self._writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(f"{record.get('stage', 'main')}/{key}", value, step)
        self._writer.flush()
