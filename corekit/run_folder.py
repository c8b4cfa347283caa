"""A run folder (the ``--out`` of ``deepclust train``) with one writer, and a list of the files
its runs wrote, so that ``--overwrite`` removes those and nothing of the user's.

A command holds the folder for its whole life (:meth:`RunFolder.open`, a context manager):

- **Lock.** ``.deepclust.lock`` is created with ``O_CREAT | O_EXCL`` and holds the pid, host,
  start time and command. A second command into the folder is refused, naming the first. A lock
  of a pid that no longer runs on this host is stale and taken over.
- **Manifest.** ``.deepclust-run.json`` lists the files the folder's runs wrote. At open the
  files present that no run listed are noted (the *snapshot*, kept in the manifest while the
  command runs); at close every file present that was not in the snapshot is listed as the
  run's. A manifest left open by a killed command is settled the same way at the next open.
  So a file the user adds after a run ended is never the run's, and a file that was there
  before a run is never the run's, even if the run wrote over it.
- **Housekeeping.** Temp files of a checkpoint write that never finished are removed at open.
  A command that wrote nothing (a failed ``--resume`` into an empty folder) leaves nothing:
  the lock and manifest go, and the folder too when the open created it and it is empty.

A subfolder that holds a lock of its own (another command running there) is not looked into.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs

from corekit.checkpoint_io import is_temp_file
from corekit.errors import UserError

LOCK_FILE = ".deepclust.lock"
MANIFEST_FILE = ".deepclust-run.json"
_OWN_FILES = frozenset({LOCK_FILE, MANIFEST_FILE, MANIFEST_FILE + ".tmp"})
#: Files and folders whose presence means a run was here (in the folder or a ``seed-*`` one).
RUN_MARKERS = ("recipe.toml", "final.json", "metrics.jsonl", "stages")
#: The files a run writes at the top of its folder (and of each ``seed-*`` folder).
RUN_FILES = ("recipe.toml", "final.json", "metrics.jsonl", "run.json", "local.json",
             "versions.json", "report.md", "curves.png", "assignments.csv", "auto_preset.json",
             "k_estimate.json", "k_estimate.png")
_YOUNG_LOCK_S = 10.0  # an unreadable lock younger than this is still being written


@attrs.frozen
class Holder:
    """Who holds a run folder's lock."""

    pid: int
    host: str
    started: str
    command: str | None

    @classmethod
    def me(cls, command: str | None) -> Holder:
        return cls(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S"),
                   command)

    def alive(self) -> bool:
        """Whether the holder still runs (a process on another host is assumed to)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process
            return True
        return True

    def describe(self) -> str:
        command = f", `{self.command}`" if self.command else ""
        return f"deepclust (pid {self.pid} on {self.host}, started {self.started}{command})"


def _read_holder(lock: Path) -> Holder | None:
    """The holder a lock file names; None when it cannot be read (being written, or garbled)."""
    try:
        info = json.loads(lock.read_text())
        return Holder(int(info["pid"]), str(info["host"]), str(info["started"]),
                      info.get("command"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _in_use(folder: Path, holder: Holder) -> UserError:
    return UserError(f"--out {folder} is in use by {holder.describe()}; wait for it to end or "
                     f"choose another --out (if no deepclust runs there, delete "
                     f"{folder / LOCK_FILE})")


def lock_holder(folder: Path) -> Holder | None:
    """The live holder of ``folder``'s lock, or None when it is free or its lock is stale."""
    holder = _read_holder(folder / LOCK_FILE)
    return holder if holder is not None and holder.alive() else None


def _take_lock(folder: Path, command: str | None) -> str | None:
    """Create ``folder``'s lock for this process; a stale one is taken over (the returned note
    says so). A live holder is a UserError naming it."""
    lock = folder / LOCK_FILE
    note = None
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_holder(lock)
            if holder is None:
                try:
                    age = time.time() - lock.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age < _YOUNG_LOCK_S:
                    raise UserError(f"--out {folder} is being opened by another deepclust; "
                                    "wait for it to end or choose another --out") from None
                note = f"removed the unreadable lock {lock} (written {age:.0f} s ago)"
            elif holder.alive():
                raise _in_use(folder, holder) from None
            else:
                note = (f"took over the lock of {holder.describe()}, which no longer runs; its "
                        "files are listed as that run's")
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(attrs.asdict(Holder.me(command)), fh)
        return note
    raise UserError(f"--out {folder}: its lock {lock} keeps changing; another deepclust is "
                    "starting there. Choose another --out")


def _walk(folder: Path) -> Iterator[Path]:
    """Every file below ``folder`` (not the lock and manifest, not in a locked subfolder)."""
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = [d for d in dirs if not (here / d / LOCK_FILE).exists()]
        for name in files:
            if not (here == folder and name in _OWN_FILES):
                yield here / name


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in _walk(folder)}


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
        return manifest if isinstance(manifest, dict) else {}
    except (OSError, ValueError):
        return {}


def _listed(folder: Path) -> set[str]:
    """The files the manifest of ``folder`` lists as its runs' (settled ones only)."""
    return set(_read_manifest(folder).get("files", []))


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run: files a run listed, a lock, or the markers of a run (in
    the folder or in a ``--seeds`` run's ``seed-*`` folders)."""
    if not folder.is_dir():
        return False
    return ((folder / LOCK_FILE).exists()
            or any((folder / f).exists() for f in _listed(folder))
            or any((folder / m).exists() for m in RUN_MARKERS)
            or any(folder.glob("seed-*/recipe.toml")))


def check_output_dir(out: Path, resume: bool, overwrite: bool, stage: str | None) -> None:
    """Before anything is loaded: refuse an ``--out`` that another command is writing, one that
    holds a run unless it is continued (``--resume``, ``--stage``) or replaced
    (``--overwrite``), and one that cannot be created or written. Removes nothing (the run's
    files go in :meth:`RunFolder.remove_run_files`, once the recipe is resolved)."""
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"--out {out}: {parent} is a file, not a folder")
    holder = lock_holder(out)
    if holder is not None:
        raise _in_use(out, holder)
    if holds_run(out) and not (resume or stage or overwrite):
        raise UserError(f"--out {out} already holds a run; continue it with --resume, rerun "
                        "one stage with --stage NAME, or replace it with --overwrite")
    created = [p for p in [out, *out.parents] if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = "the file system is read-only" if exc.errno == errno.EROFS else exc.strerror
        raise UserError(f"--out {out} cannot be written ({reason}); choose another folder") \
            from None
    finally:
        _remove_empty(created)


def _remove_empty(folders: Iterable[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that exists and is empty."""
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temp files of checkpoint writes that never finished."""
    stale = [p for p in _walk(folder) if is_temp_file(p.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@attrs.define
class RunFolder:
    """A run folder held by this process; open it with :meth:`open`, as a context manager.

    ``listed``: the files its runs wrote (relative POSIX paths). ``snapshot``: the files that
    were present at open and no run listed. ``notes``: what the open did besides taking the
    lock (a stale lock taken over, temp files removed, a killed run's files settled), for the
    caller to print."""

    path: Path
    created: list[Path]
    listed: set[str]
    snapshot: set[str]
    notes: list[str] = attrs.field(factory=list)
    closed: bool = False

    @classmethod
    def open(cls, path: Path, command: str | None) -> RunFolder:
        """Create ``path`` if needed and hold it: the lock, stale temp files removed, a manifest
        left open by a killed command settled, and the files present noted."""
        created = [p for p in [path, *path.parents] if not p.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--out {path} cannot be created ({exc.strerror}); choose another "
                            "folder") from None
        try:
            note = _take_lock(path, command)
        except BaseException:
            _remove_empty(created)
            raise
        folder = cls(path, created, set(), set(), [note] if note else [])
        try:
            folder._start(command)
        except BaseException:
            folder.close()
            raise
        return folder

    def _start(self, command: str | None) -> None:
        stale = _remove_stale_temps(self.path)
        if stale:
            self.notes.append(f"removed {len(stale)} temp file(s) of an unfinished checkpoint "
                              f"write: {', '.join(str(p) for p in stale)}")
        manifest = _read_manifest(self.path)
        self.listed = set(manifest.get("files", []))
        present = _files(self.path)
        unsettled = manifest.get("open")
        if unsettled is not None:
            new = present - set(unsettled.get("snapshot", [])) - self.listed
            self.listed |= new
            self.notes.append(f"listed {len(new)} file(s) of the run that ended without "
                              f"closing {self.path} (pid {unsettled.get('pid')}) as its own")
        self.listed &= present
        self.snapshot = present - self.listed
        self._write_manifest({**attrs.asdict(Holder.me(command)),
                              "snapshot": sorted(self.snapshot)})

    def _write_manifest(self, open_run: dict[str, Any] | None) -> None:
        manifest: dict[str, Any] = {"files": sorted(self.listed)}
        if open_run is not None:
            manifest["open"] = open_run
        tmp = self.path / (MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, self.path / MANIFEST_FILE)

    def unlisted_run_files(self) -> list[str]:
        """Files with the names a run writes (and everything under ``stages/``), in the folder
        or its ``seed-*`` folders, that no run listed: an older deepclust's run, or the user's."""
        tops = [Path("."), *(p.relative_to(self.path) for p in self.path.glob("seed-*")
                             if p.is_dir())]
        found = []
        for top in tops:
            found += [(top / name).as_posix() for name in RUN_FILES
                      if (self.path / top / name).is_file()]
            found += [p.relative_to(self.path).as_posix()
                      for p in _walk(self.path / top / "stages")]
        return sorted(set(found) - self.listed)

    def remove_run_files(self) -> list[Path]:
        """``--overwrite``: remove the files the folder's runs wrote (and the folders that this
        leaves empty), nothing else. Files with a run's names that no run listed are a
        UserError: the folder is not guessed at."""
        unlisted = self.unlisted_run_files()
        if unlisted:
            shown = ", ".join(unlisted[:5]) + (f" and {len(unlisted) - 5} more"
                                               if len(unlisted) > 5 else "")
            raise UserError(f"--out {self.path} holds files that no deepclust run listed as its "
                            f"own ({shown}): a run of an older deepclust, or your files. "
                            "--overwrite removes only files a run listed; move these away "
                            "(or delete the old run yourself) or choose another --out")
        removed = []
        for name in sorted(self.listed):
            path = self.path / name
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(path)
        _remove_empty({parent for path in removed for parent in path.parents
                       if parent.is_relative_to(self.path) and parent != self.path})
        self.listed = set()
        self._write_manifest(_read_manifest(self.path).get("open"))
        return removed

    def close(self) -> None:
        """List the files this command wrote, and let go of the folder. A folder its runs never
        wrote to keeps no manifest, and goes if this open created it and it is empty."""
        if self.closed:
            return
        self.closed = True
        try:
            present = _files(self.path)
            self.listed = (self.listed | (present - self.snapshot)) & present
            if self.listed:
                self._write_manifest(None)
            else:
                (self.path / MANIFEST_FILE).unlink(missing_ok=True)
        finally:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            if not self.listed:
                _remove_empty(self.created)

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
