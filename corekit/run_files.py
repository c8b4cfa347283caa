"""The files of a run directory that people read and share: ``recipe.toml`` and
``final.json`` name data sets without the absolute paths of this machine (those go to
``local.json``, which stays with the run and is not meant to be shared), and ``run.json`` says
what ran: recipe, preset, seeds, epochs per stage and the command."""

from __future__ import annotations

import copy
import json
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
