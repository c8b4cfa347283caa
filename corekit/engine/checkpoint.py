"""Transitional: checkpoint I/O moved to :mod:`corekit.checkpoint_io`. Only ``corekit/run.py``
(being rewritten into ``corekit/runner/``) still imports this name; delete this file with it."""

from corekit.checkpoint_io import load, save_atomic

__all__ = ["load", "save_atomic"]
