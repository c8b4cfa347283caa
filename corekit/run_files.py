"""The files of a run directory that people read and share: ``recipe.toml`` and
``final.json`` name data sets without the absolute paths of this machine (those go to
``local.json``, which stays with the run and is not meant to be shared), and ``run.json`` says
what ran: recipe, preset, seeds, epochs per stage and the command."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corekit import recipe as rc

LOCAL_FILE = "local.json"
RUN_FILE = "run.json"


def public_data_name(spec: str) -> str:
    """``"imagefolder:/home/me/cats"`` → ``"imagefolder:cats"``; names without a path stay."""
    name, sep, path = spec.partition(":")
    return f"{name}:{Path(path).name}" if sep and path else spec


def _data_tables(raw: rc.Raw) -> list[dict[str, Any]]:
    tables = [raw.get("data")] + [s.get("data") for s in raw.get("stage") or []]
    return [t for t in tables if isinstance(t, dict)]


def redact(raw: rc.Raw) -> tuple[rc.Raw, dict[str, str]]:
    """A copy of ``raw`` with public data names, and the map public name → real spec."""
    out = copy.deepcopy(raw)
    real: dict[str, str] = {}
    for table in _data_tables(out):
        for key in ("name", "reference"):
            spec = table.get(key)
            if isinstance(spec, str) and public_data_name(spec) != spec:
                real[public_data_name(spec)] = spec
                table[key] = public_data_name(spec)
    return out, real


def restore(raw: rc.Raw, run_dir: Path) -> rc.Raw:
    """``raw`` (read from a run's recipe.toml) with the real data specs of ``local.json``."""
    path = run_dir / LOCAL_FILE
    if not path.exists():
        return raw
    real: Mapping[str, str] = json.loads(path.read_text()).get("data", {})
    out = copy.deepcopy(raw)
    for table in _data_tables(out):
        for key in ("name", "reference"):
            if table.get(key) in real:
                table[key] = real[table[key]]
    return out


def load_run_recipe(run_dir: Path) -> rc.Recipe:
    """The recipe a run directory ran, with its local data paths."""
    return rc.validate(restore(rc.load_toml(run_dir / "recipe.toml"), run_dir))


def write_run_files(out: Path, recipe: rc.Recipe, command: str | None) -> None:
    """``recipe.toml`` (public names), ``local.json`` (real paths) and ``run.json``."""
    public, real = redact(recipe.raw)
    (out / "recipe.toml").write_text(rc.to_toml(public))
    if real:
        (out / LOCAL_FILE).write_text(json.dumps(
            {"note": "paths of this machine; not meant to be shared", "data": real}, indent=2))
    info = {"recipe": recipe.name, "preset": recipe.raw.get("preset", "none"),
            "seeds": [s.train.seed for s in recipe.stages][:1],
            "stages": [{"name": s.name, "data": public_data_name(s.data.name),
                        "epochs": s.train.epochs} for s in recipe.stages],
            "command": command}
    (out / RUN_FILE).write_text(json.dumps(info, indent=2))


RUN_MARKERS = ("recipe.toml", "final.json", "metrics.jsonl", "stages")
RUN_ARTEFACTS = (*RUN_MARKERS, "run.json", "local.json", "versions.json", "report.md",
                 "report", "curves.png", "assignments.csv", "auto_preset.json",
                 "k_estimate.json", "k_estimate.png", "predictions", "export", "tensorboard")


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run (or a ``--seeds`` run's seed folders)."""
    return folder.is_dir() and (any((folder / m).exists() for m in RUN_MARKERS)
                                or any(folder.glob("seed-*/recipe.toml")))


def check_output_dir(out: Path, resume: bool, overwrite: bool, stage: str | None) -> None:
    """Refuse a ``--out`` that holds a run unless it is continued (``--resume``, ``--stage``)
    or explicitly replaced (``--overwrite``: only the run's own files are removed); refuse one
    that cannot be created or written, before any data is loaded."""
    import errno
    import shutil
    import tempfile

    from corekit.errors import UserError

    if holds_run(out) and not (resume or stage or overwrite):
        raise UserError(f"--out {out} already holds a run; continue it with --resume, rerun "
                        "one stage with --stage NAME, or replace it with --overwrite")
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"--out {out}: {parent} is a file, not a folder")
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
        for folder in created:
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
    if overwrite and holds_run(out):
        for name in RUN_ARTEFACTS:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        for seed in out.glob("seed-*"):
            if holds_run(seed):
                shutil.rmtree(seed)


def interrupted_note(out: Path) -> str:
    """What an interrupted run left: its newest checkpoint, or that it wrote none."""
    checkpoints = sorted(out.glob("stages/*/checkpoint.pt"), key=lambda p: p.stat().st_mtime) \
        + sorted(out.glob("seed-*/stages/*/checkpoint.pt"), key=lambda p: p.stat().st_mtime)
    if not checkpoints:
        return ("no checkpoint was written yet (the first epoch did not finish, or "
                "train.checkpoint_every = 0): there is nothing to resume")
    return f"the last checkpoint is {checkpoints[-1]}; continue with --resume --out {out}"


def public_command(argv: list[str]) -> str:
    """The command line with data paths and the run directory reduced to their names."""
    import shlex

    shown = []
    for i, arg in enumerate(argv):
        before = argv[i - 1] if i else ""
        shown.append(public_data_name(arg) if before == "--data" else
                     Path(arg).name if before == "--out" else arg)
    return "deepclust " + " ".join(shlex.quote(a) for a in shown)
