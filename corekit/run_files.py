"""The files of a run directory that people read and share: ``recipe.toml`` and
``final.json`` name data sets without the absolute paths of this machine (those go to
``local.json``, which stays with the run and is not meant to be shared), and ``run.json`` says
what ran: recipe, preset, seeds, epochs per stage and the command."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from corekit import recipe as rc
from corekit.errors import UserError

LOCAL_FILE = "local.json"
RUN_FILE = "run.json"
AUTO_FILE = "auto_preset.json"


def read_json(path: Path, what_to_do: str = "restore it from a copy of the run") -> dict[str, Any]:
    """The JSON object in ``path``; one that is not valid JSON (a write cut short, an edit) or
    not an object is a UserError that says so and ``what_to_do``."""
    try:
        found = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        why = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except UnicodeDecodeError:
        why = "not text"
    else:
        if isinstance(found, dict):
            return found
        why = f"a JSON {type(found).__name__}, not an object"
    raise UserError(f"{path} cannot be read ({why}); {what_to_do}")


def public_data_name(spec: str) -> str:
    """``"imagefolder:/home/me/cats"`` → ``"imagefolder:cats"``; names without a path stay."""
    name, sep, path = spec.partition(":")
    return f"{name}:{Path(path).name}" if sep and path else spec


def public_path(path: str) -> str:
    """``"/home/me/weights/resnet.pth"`` → ``"resnet.pth"``."""
    return Path(path).name


PathField = tuple[dict[str, Any], str, Callable[[str], str]]


def _model_tables(model: Any) -> list[dict[str, Any]]:
    if not isinstance(model, dict):
        return []
    parts = [model.get("backbone")]
    for group in ("encoders", "heads"):
        if isinstance(model.get(group), dict):
            parts.extend(model[group].values())
    return [p for p in parts if isinstance(p, dict)]


def _path_fields(raw: rc.Raw) -> list[PathField]:
    """Every value of ``raw`` that may name a path of this machine, with how it is shown:
    data sets (``data.name``, ``data.reference``, in every stage) and weight files
    (``weights`` of the backbone, encoders and heads, in every stage), also in the record of
    the ``auto`` preset."""
    auto = raw.get("auto")
    preset = auto.get("preset") if isinstance(auto, dict) else None
    sections = [raw, *(s for s in raw.get("stage") or [] if isinstance(s, dict)),
                *([preset] if isinstance(preset, dict) else [])]
    fields: list[PathField] = []
    for section in sections:
        data = section.get("data")
        if isinstance(data, dict):
            fields += [(data, key, public_data_name) for key in ("name", "reference")]
        fields += [(part, "weights", public_path) for part in _model_tables(section.get("model"))]
    return fields


def redact(raw: rc.Raw) -> tuple[rc.Raw, dict[str, str]]:
    """A copy of ``raw`` with public data names and weight file names, and the map public
    name → real spec."""
    out = copy.deepcopy(raw)
    real: dict[str, str] = {}
    for table, key, public in _path_fields(out):
        spec = table.get(key)
        if isinstance(spec, str) and public(spec) != spec:
            real[public(spec)] = spec
            table[key] = public(spec)
    return out, real


def restore(raw: rc.Raw, run_dir: Path) -> rc.Raw:
    """``raw`` (read from a run's recipe.toml) with the real data specs and weight paths of
    ``local.json``."""
    path = run_dir / LOCAL_FILE
    if not path.exists():
        return raw
    real: Mapping[str, str] = read_json(path, "restore it from a copy of the run: it holds "
                                        "the paths of this machine that recipe.toml names "
                                        "by their names only").get("data", {})
    out = copy.deepcopy(raw)
    for table, key, _ in _path_fields(out):
        if table.get(key) in real:
            table[key] = real[table[key]]
    return out


def load_run_recipe(run_dir: Path) -> rc.Recipe:
    """The recipe a run directory ran, with its local data paths."""
    return rc.validate(restore(rc.load_toml(run_dir / "recipe.toml"), run_dir))


def write_run_files(out: Path, recipe: rc.Recipe, command: str | None) -> None:
    """``recipe.toml`` (public names), ``local.json`` (real paths), ``run.json`` and, where
    the ``auto`` preset chose settings, ``auto_preset.json`` (public names too)."""
    public, real = redact(recipe.raw)
    (out / "recipe.toml").write_text(rc.to_toml(public))
    if "auto" in public:
        (out / AUTO_FILE).write_text(json.dumps(public["auto"], indent=2))
    if real:
        (out / LOCAL_FILE).write_text(json.dumps(
            {"note": "paths of this machine; not meant to be shared", "data": real}, indent=2))
    info = {"recipe": recipe.name, "preset": recipe.raw.get("preset", "none"),
            "seeds": [s.train.seed for s in recipe.stages][:1],
            "stages": [{"name": s.name, "data": public_data_name(s.data.name),
                        "epochs": s.train.epochs} for s in recipe.stages],
            "command": command}
    (out / RUN_FILE).write_text(json.dumps(info, indent=2))


def run_folders(path: Path, command: str) -> list[Path]:
    """The runs ``deepclust COMMAND`` reads in ``path``: the ``seed-<s>`` folders of a
    ``--seeds`` run, else ``[path]`` for a run. Anything else is a UserError saying what to
    give."""
    seeds = sorted(p.parent for p in path.glob("seed-*/recipe.toml")) if path.is_dir() else []
    if seeds:
        return seeds
    if (path / "recipe.toml").is_file():
        return [path]
    why = "does not exist" if not path.exists() else "holds no recipe.toml"
    raise UserError(f"{path} is not a run directory ({why}): give the folder `deepclust train` "
                    f"wrote (its --out), e.g. deepclust {command} "
                    "runs/cc-digits-20250101-120000")


def interrupted_note(out: Path) -> str:
    """What an interrupted run left: its newest checkpoint, or that it wrote none."""
    checkpoints = sorted(out.glob("stages/*/checkpoint.pt"), key=lambda p: p.stat().st_mtime) \
        + sorted(out.glob("seed-*/stages/*/checkpoint.pt"), key=lambda p: p.stat().st_mtime)
    if not checkpoints:
        return ("no checkpoint was written yet (the first epoch did not finish, or "
                "train.checkpoint_every = 0): there is nothing to resume")
    return f"the last checkpoint is {checkpoints[-1]}; continue with --resume --out {out}"


def public_setting(text: str) -> str:
    """A ``--set KEY=VALUE`` whose value holds a path, reduced to the file's or folder's name
    (``model.backbone.weights="/home/me/w.pth"`` → ``model.backbone.weights="w.pth"``)."""
    key, sep, value = text.partition("=")
    quote = value[:1] if len(value) >= 2 and value[:1] in "\"'" and value[-1:] == value[:1] \
        else ""
    inner = value[1:-1] if quote else value
    if not sep or "/" not in inner:
        return text
    shown = public_data_name(inner) if ":" in inner.split("/", 1)[0] else public_path(inner)
    return f"{key}={quote}{shown}{quote}"


def public_command(argv: list[str]) -> str:
    """The command line with data paths and the run directory reduced to their names."""
    import shlex

    shown = []
    for i, arg in enumerate(argv):
        before = argv[i - 1] if i else ""
        shown.append(public_data_name(arg) if before == "--data" else
                     Path(arg).name if before == "--out" else
                     public_setting(arg) if before == "--set" else arg)
    return "deepclust " + " ".join(shlex.quote(a) for a in shown)
