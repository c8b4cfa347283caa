"""The files ``deepclust predict`` and ``deepclust export`` wrote, so that they replace only
their own: each folder they write into keeps ``.deepclust-written.json``, naming each file with
its size and modification time when written. A file that is not listed there, or that changed
since, is someone else's and is never replaced."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from corekit.errors import UserError

WRITTEN_FILE = ".deepclust-written.json"


def _listed(folder: Path) -> dict[str, Any]:
    try:
        listed = json.loads((folder / WRITTEN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return listed if isinstance(listed, dict) else {}


def _stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def foreign(path: Path) -> bool:
    """Whether ``path`` exists and is not a file that predict or export wrote, unchanged since."""
    if not (path.exists() or path.is_symlink()):
        return False
    if path.is_symlink() or not path.is_file():
        return True
    entry = _listed(path.parent).get(path.name)
    return not isinstance(entry, dict) or entry.get("stamp") != _stamp(path)


def refuse_foreign(paths: Iterable[Path], command: str, what_to_do: str) -> None:
    """A UserError naming those of ``paths`` that ``command`` would replace but did not write."""
    taken = [p for p in paths if foreign(p)]
    if taken:
        names = ", ".join(str(p) for p in taken)
        raise UserError(f"deepclust {command} would replace {names}, which it did not write; "
                        f"{what_to_do}")


def record(paths: Iterable[Path], command: str) -> None:
    """List ``paths`` (just written by ``command``) in their folders' written-files list."""
    by_folder: dict[Path, list[Path]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, []).append(path)
    for folder, written in by_folder.items():
        listed = _listed(folder)
        listed.update({p.name: {"by": command, "stamp": _stamp(p)} for p in written})
        (folder / WRITTEN_FILE).write_text(json.dumps(listed, indent=1))
