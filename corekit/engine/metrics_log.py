"""Per-epoch records: one JSON line each in ``metrics.jsonl``, and TensorBoard when installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any


def _epoch_key(record: dict[str, Any]) -> tuple[Any, Any]:
    return record.get("stage"), record.get("epoch")


class MetricsLog:
    """Appends epoch records to ``run_dir/metrics.jsonl``; mirrors numeric values to
    TensorBoard (``run_dir/tensorboard``) when the ``tensorboard`` package is importable."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._writer = None
        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any], step: int) -> None:
        """Append ``record``; a record of the same stage and epoch (an epoch re-run after a
        resume) replaces the earlier one, so each epoch is in the file once."""
        key = _epoch_key(record)
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        kept = [line for line in lines if line.strip() and _epoch_key(json.loads(line)) != key]
        if len(kept) != len(lines):
            self.path.write_text("".join(line + "\n" for line in kept))
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(f"{record.get('stage', 'main')}/{key}", value, step)
        self._writer.flush()
