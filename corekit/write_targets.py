"""Where ``report``, ``predict``, ``export`` and ``new-plugin`` write: a target checked before
anything is written (a file where a folder goes, a folder where a file goes), and the errors of
writing (a read-only file system, no permission, a name too long) restated as UserErrors that
name the path and say what to do."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from corekit.errors import UserError

REASONS = {
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "its name or path is too long",
    errno.ENOENT: "the folder it goes in is missing or takes no new files",
    errno.EISDIR: "a folder is in its place",
    errno.ENOTDIR: "a part of its path is a file, not a folder",
    errno.EEXIST: "a file is in the place of a folder it needs",
}
"""What an errno of writing means, in words (others: the system's own words)."""


def reason(exc: OSError) -> str:
    """Why writing failed, in words."""
    return REASONS.get(exc.errno or 0, exc.strerror or str(exc))


def _mode(path: Path) -> int | None:
    """The file type bits of ``path``; None when there is nothing there (or it cannot be
    looked at: the write that follows says why)."""
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):
        return None


def _is_file(path: Path) -> bool:
    mode = _mode(path)
    return mode is not None and not stat.S_ISDIR(mode)


def check_target(path: Path, option: str, folder: bool, what_to_do: str) -> None:
    """Refuse (a UserError ending in ``what_to_do``) the target ``path``, given as ``option``,
    where a parent of it is a file, or where it is a file and a folder is written (``folder``)
    or a folder and a file is written."""
    for parent in path.parents:
        if _is_file(parent):
            raise UserError(f"{option} {path}: {parent} is a file, not a folder; {what_to_do}")
    mode = _mode(path)
    if mode is None:
        return
    if folder and not stat.S_ISDIR(mode):
        raise UserError(f"{option} {path} is a file, not a folder; {what_to_do}")
    if not folder and stat.S_ISDIR(mode):
        raise UserError(f"{option} {path} is a folder, not a file; {what_to_do}")


@contextlib.contextmanager
def writing(what_to_do: str) -> Iterator[None]:
    """Within the block an OSError is a UserError naming the path that cannot be written, why,
    and ``what_to_do``."""
    try:
        yield
    except OSError as exc:
        where = exc.filename if exc.filename is not None else "a file"
        raise UserError(f"{where} cannot be written ({reason(exc)}); {what_to_do}") from None
