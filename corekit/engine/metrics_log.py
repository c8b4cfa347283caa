"""Per-epoch records: one JSON line each in ``metrics.jsonl``, and TensorBoard when installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any


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
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(f"{record.get('stage', 'main')}/{key}", value, step)
        self._writer.flush()
