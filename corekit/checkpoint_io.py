"""Checkpoints written atomically (temp file + rename) and read with ``weights_only=True``.

A leaf module: it imports nothing from corekit but :mod:`corekit.errors`, and torch only when a
checkpoint is written or read, so that :mod:`corekit.run_folder` can recognise the temp files
of a killed write (:func:`is_temp_file`) without importing torch."""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from corekit.errors import TrainingError

_TEMP_NAME = re.compile(r"\..+\.pt\.[a-z0-9_]{8}\.tmp")
_FULL = (errno.ENOSPC, errno.EDQUOT)
_MARGIN = 1 << 20  # free bytes below which a failed write is put down to a full disk


def is_temp_file(name: str) -> bool:
    """Whether ``name`` is the temp file of a :func:`save_atomic` that never finished
    (``.checkpoint.pt.k3j9x_2a.tmp``)."""
    return _TEMP_NAME.fullmatch(name) is not None


def _nbytes(value: Any) -> int:
    """The bytes of the tensors in ``value`` (nested dicts, lists and tuples)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.untyped_storage().nbytes()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_nbytes(v) for v in value)
    return 0


def _disk_full(folder: Path, payload: dict[str, Any], tmp: Path) -> bool:
    """Whether the rest of ``payload`` would not fit in the space left beside ``tmp`` (what
    torch's ``PytorchStreamWriter failed writing file`` means on a full disk)."""
    written = tmp.stat().st_size if tmp.exists() else 0
    needed = max(_nbytes(payload) - written, 0) + _MARGIN
    return shutil.disk_usage(folder).free < needed


def _no_space(path: Path) -> TrainingError:
    kept = (f"the last good checkpoint {path} is kept. Free some space and continue with "
            "--resume" if path.exists() else
            "no earlier checkpoint exists yet. Free some space and start again")
    return TrainingError(f"no space left on device while writing {path}; {kept}")


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves either the old file or the new one;
    a full disk is a TrainingError saying so, and the temp file is removed."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in _FULL:
            raise _no_space(path) from None
        raise
    except RuntimeError:
        full = _disk_full(path.parent, payload, tmp)
        tmp.unlink(missing_ok=True)
        if full:
            raise _no_space(path) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint; a missing or unreadable file is a TrainingError saying what to do."""
    import torch

    if not path.exists():
        raise TrainingError(f"no checkpoint at {path}; start without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"checkpoint {path} cannot be read ({exc}); "
                            "delete it to start over") from exc
