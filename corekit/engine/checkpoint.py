"""Checkpoints written atomically (temp file + rename) and read with ``weights_only=True``."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from corekit.errors import TrainingError


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            kept = (f"the last good checkpoint {path} is kept" if path.exists()
                    else "no earlier checkpoint exists")
            raise TrainingError(f"no space left on device while writing {path}; {kept}. Free "
                                "some space and continue with --resume") from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint; a missing or unreadable file is a TrainingError saying what to do."""
    if not path.exists():
        raise TrainingError(f"no checkpoint at {path}; start without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"checkpoint {path} cannot be read ({exc}); "
                            "delete it to start over") from exc
