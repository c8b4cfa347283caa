"""Recipes: TOML files validated into attrs classes.

A recipe names components; the composer builds them. Sections: ``data``, ``model``,
``augment``, ``losses``, ``clusterer``, ``memory_bank``, ``train``, ``eval``. A multi-stage
method lists ``[[stage]]`` tables; each stage is a partial recipe merged over the top-level
sections. ``extends = "other"`` starts from another recipe; ``[presets.<dataset>]`` holds
per-dataset settings picked by ``--data``; ``--set a.b=value`` overrides any key.
Unknown keys are errors that name the key's path and the nearest valid keys.
"""

from __future__ import annotations

import copy
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from corekit.errors import RecipeError, did_you_mean

Raw = dict[str, Any]


def _opts() -> Any:
    return attrs.field(factory=dict)


@attrs.define
class Component:
    """A named component and the options passed to its factory."""

    type: str
    options: dict[str, Any] = _opts()


@attrs.define
class Head:
    """A head: ``input`` names an encoder or another head it reads."""

    type: str
    input: str = "backbone"
    options: dict[str, Any] = _opts()


@attrs.define
class Loss:
    """A weighted loss term, active from ``start_epoch`` (0-based) on."""

    type: str
    weight: float = 1.0
    start_epoch: int = 0
    options: dict[str, Any] = _opts()


@attrs.define
class Target:
    """An EMA target branch over ``parts`` (encoders and heads) of the online network."""

    parts: list[str] = attrs.field(factory=lambda: ["backbone"])
    momentum: float = 0.996
    schedule: str = "constant"  # "constant" or "cosine" (momentum -> 1 over training)


@attrs.define
class Model:
    """The networks: a primary ``backbone``, extra named ``encoders``, ``heads``, ``target``."""

    backbone: Component = attrs.field(factory=lambda: Component("small_cnn"))
    encoders: dict[str, Component] = attrs.field(factory=dict)
    heads: dict[str, Head] = attrs.field(factory=dict)
    target: Target | None = None


@attrs.define
class Data:
    """The training images. ``reference`` names a second dataset; ``source`` picks which one
    this stage trains on; ``n_clusters`` defaults to the dataset's class count."""

    name: str = "digits"
    reference: str | None = None
    source: str = "main"
    n_clusters: int | None = None
    subset: int | None = None


@attrs.define
class Augment:
    """``views`` augmented views per image; ``type`` is one pipeline or one per view."""

    type: str | list[str] = "simclr"
    views: int = 2
    size: int | None = None
    normalize: bool = False
    options: dict[str, Any] = _opts()


@attrs.define
class Clusterer:
    """The E-step: cluster ``features`` (``branch:output``) every ``every`` epochs; with
    ``per_batch`` the clusterer's ``update`` also re-assigns each batch after its step."""

    type: str
    features: str = "online:backbone"
    every: int = 1
    before_training: bool = True
    per_batch: bool = False
    normalize: bool = True
    options: dict[str, Any] = _opts()


@attrs.define
class MemoryBank:
    """A bank of one feature per dataset index, refreshed after each optimizer step."""

    source: str = "online:backbone"
    momentum: float = 0.5
    view: int = 0


@attrs.define
class Optimizer:
    """Optimizer settings; ``lr_mult`` scales the lr of parameters under a prefix
    (e.g. ``{"heads.pred" = 10}``)."""

    type: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: list[float] = attrs.field(factory=lambda: [0.9, 0.999])
    lr_mult: dict[str, float] = attrs.field(factory=dict)


@attrs.define
class Schedule:
    """Learning rate: linear warm-up per step, then constant or cosine over ``cosine_epochs``."""

    type: str = "constant"
    warmup_epochs: float = 0.0
    cosine_epochs: float | None = None


@attrs.define
class Train:
    """The M-step loop and its numerics."""

    epochs: int = 10
    batch_size: int = 256
    drop_last: bool = True
    steps_per_epoch: int | None = None
    optimizer: Optimizer = attrs.field(factory=Optimizer)
    schedule: Schedule = attrs.field(factory=Schedule)
    precision: str = "fp32"  # fp32, bf16, fp16, auto
    channels_last: bool = False
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    freeze: list[str] = attrs.field(factory=list)
    sampler: str = "shuffle"  # "shuffle" or "cluster_balanced" (needs a [clusterer])
    eval_every: int = 1
    checkpoint_every: int = 1
    time_phases: bool = False  # seconds per loop phase into metrics.jsonl (syncs CUDA)


@attrs.define
class Eval:
    """How clusters are read off: ``"clusterer"`` (E-step on ``features``) or ``"head:<name>"``
    (argmax of a head's output)."""

    assign: str = "clusterer"
    features: str | None = None
    batch_size: int = 512


@attrs.define
class Stage:
    """One training stage: everything a single run needs."""

    name: str = "main"
    fresh: bool = False
    data: Data = attrs.field(factory=Data)
    model: Model = attrs.field(factory=Model)
    augment: Augment = attrs.field(factory=Augment)
    losses: dict[str, Loss] = attrs.field(factory=dict)
    clusterer: Clusterer | None = None
    memory_bank: MemoryBank | None = None
    train: Train = attrs.field(factory=Train)
    eval: Eval = attrs.field(factory=Eval)


@attrs.define
class Recipe:
    """A resolved recipe: metadata plus one or more stages."""

    name: str
    description: str = ""
    requires: list[str] = attrs.field(factory=list)
    stages: list[Stage] = attrs.field(factory=list)
    raw: Raw = attrs.field(factory=dict, repr=False)


COMPONENT_CLASSES = (Component, Head, Loss, Clusterer)
META_KEYS = {"name", "description", "extends", "requires", "presets", "stage"}


def _is_component(cls: type) -> bool:
    return cls in COMPONENT_CLASSES or (cls is Augment)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Validate ``value`` against annotation ``tp``; errors name ``path``."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise RecipeError(f"{path}: a value is required")
    origin = typing.get_origin(tp)
    if attrs.has(tp):
        if isinstance(value, str) and tp in (Component, Head, Loss, Clusterer):
            value = {"type": value}
        if not isinstance(value, Mapping):
            raise RecipeError(f"{path}: expected a table, got {value!r}")
        return build(tp, value, path)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for alt in typing.get_args(tp):
            try:
                return _convert(value, alt, path)
            except RecipeError as exc:
                errors.append(str(exc))
        raise RecipeError(errors[0])
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise RecipeError(f"{path}: expected a list, got {value!r}")
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise RecipeError(f"{path}: expected a table, got {value!r}")
        return {k: _convert(v, item, f"{path}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise RecipeError(f"{path}: expected {tp.__name__}, got {value!r}")
    if not isinstance(value, tp):
        raise RecipeError(f"{path}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def build(cls: type, raw: Mapping[str, Any], path: str) -> Any:
    """Build attrs class ``cls`` from ``raw``; component tables keep unknown keys as options."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in attrs.fields(cls) if f.name != "options"]
    kwargs: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        here = f"{path}.{key}" if path else key
        if key in names:
            kwargs[key] = _convert(value, hints[key], here)
        elif "options" in hints:
            options[key] = value
        else:
            raise RecipeError(f"{here}: unknown key; {did_you_mean(key, names)}")
    if "options" in hints:
        kwargs["options"] = options
    try:
        return cls(**kwargs)
    except TypeError as exc:
        missing = [f.name for f in attrs.fields(cls)
                   if f.default is attrs.NOTHING and f.name not in kwargs]
        raise RecipeError(f"{path or 'recipe'}: missing required key(s) {missing}") from exc


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Raw:
    """Deep-merge ``over`` onto ``base`` (tables merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=5"`` -> (["train", "epochs"], 5); values are TOML, else plain strings."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=5")
    key, value = text.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip().split("."), parsed


def apply_override(raw: Raw, keys: list[str], value: Any) -> Raw:
    """Set ``keys`` to ``value`` in a copy of ``raw``; ``stage.N`` indexes the stage list."""
    out = copy.deepcopy(raw)
    node: Any = out
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise RecipeError(f"--set {'.'.join(keys)}: no stage {key!r} "
                                  f"(the recipe has {len(node)})")
            node = node[int(key)]
            continue
        nxt = node.get(key)
        if nxt is None:
            nxt = node[key] = {}
        elif not isinstance(nxt, (dict, list)):
            raise RecipeError(f"--set {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is not a table")
        node = nxt
    if isinstance(node, list):
        raise RecipeError(f"--set {'.'.join(keys)}: name a key inside the stage")
    node[keys[-1]] = value
    return out


def load_toml(path: Path) -> Raw:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise RecipeError(f"recipe file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe file {path} is not valid TOML: {exc}") from exc


def resolve_raw(name_or_path: str, find: Callable[[str], Path], _seen: tuple[str, ...] = ()) -> Raw:
    """The raw dict of a recipe with its ``extends`` chain merged in (parent first)."""
    if name_or_path in _seen:
        raise RecipeError(f"recipe {name_or_path!r} extends itself: {' -> '.join(_seen)}")
    path = Path(name_or_path) if name_or_path.endswith(".toml") else find(name_or_path)
    raw = load_toml(path)
    raw.setdefault("name", path.stem)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    return merge(resolve_raw(parent, find, (*_seen, name_or_path)), raw)


def dataset_key(data: str) -> str:
    """The preset key of a ``--data`` value: ``mnist:DIR`` -> ``mnist``."""
    return data.split(":", 1)[0]


def select_data(raw: Raw, data: str | None) -> Raw:
    """Merge the preset for ``data`` (if the recipe has one) and set ``data.name``."""
    presets = raw.get("presets", {})
    if data is None:
        return raw
    out = merge(raw, presets.get(dataset_key(data), {}))
    return merge(out, {"data": {"name": data}})


def validate(raw: Raw) -> Recipe:
    """Validate a fully merged raw recipe into a ``Recipe`` with its stages."""
    sections = {k: v for k, v in raw.items() if k not in META_KEYS}
    stage_names = [f.name for f in attrs.fields(Stage)]
    for key in sections:
        if key not in stage_names:
            valid = stage_names + sorted(META_KEYS)
            raise RecipeError(f"{key}: unknown section; {did_you_mean(key, valid)}")
    for key in raw.get("presets", {}):
        if not isinstance(raw["presets"][key], Mapping):
            raise RecipeError(f"presets.{key}: expected a table")
    stage_raws = raw.get("stage") or [{}]
    stages = []
    for i, stage_raw in enumerate(stage_raws):
        where = f"stage[{i}]" if "stage" in raw else ""
        merged = merge(sections, stage_raw)
        stages.append(build(Stage, merged, where))
    for i, stage in enumerate(stages):
        if stage.name == "main" and len(stages) > 1:
            stage.name = f"stage{i + 1}"
    recipe = Recipe(
        name=_convert(raw.get("name", "recipe"), str, "name"),
        description=_convert(raw.get("description", ""), str, "description"),
        requires=_convert(raw.get("requires", []), list[str], "requires"),
        stages=stages,
        raw=raw,
    )
    for preset, body in raw.get("presets", {}).items():
        build(Stage, merge(sections, {k: v for k, v in body.items() if k not in META_KEYS}),
              f"presets.{preset}")
    return recipe


def resolve(
    name_or_path: str,
    find: Callable[[str], Path],
    data: str | None = None,
    overrides: list[str] = (),  # type: ignore[assignment]
) -> Recipe:
    """Load, extend, pick the dataset preset, apply ``--set`` overrides and validate."""
    raw = select_data(resolve_raw(name_or_path, find), data)
    for text in overrides:
        keys, value = parse_override(text)
        raw = apply_override(raw, keys, value)
    return validate(raw)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, Mapping) for x in value)


def to_toml(raw: Mapping[str, Any]) -> str:
    """Render a raw recipe as TOML (for ``deepclust show`` and the run directory)."""
    lines: list[str] = []

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else scalar(k)

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{key(k)} = {scalar(x)}" for k, x in v.items()) + " }"
        return repr(v)

    def table(node: Mapping[str, Any], prefix: str) -> None:
        flat = {k: v for k, v in node.items()
                if not isinstance(v, Mapping) and not _is_table_list(v)}
        if flat or not prefix:
            if prefix:
                lines.append(f"\n[{prefix}]")
            lines.extend(f"{key(k)} = {scalar(v)}" for k, v in flat.items())
        for k, v in node.items():
            if isinstance(v, Mapping):
                table(v, f"{prefix}.{key(k)}" if prefix else key(k))
            elif _is_table_list(v):
                for item in v:
                    lines.append(f"\n[[{prefix + '.' if prefix else ''}{k}]]")
                    sub = {a: b for a, b in item.items() if not isinstance(b, Mapping)}
                    lines.extend(f"{key(a)} = {scalar(b)}" for a, b in sub.items())
                    for a, b in item.items():
                        if isinstance(b, Mapping):
                            lines.append(f"{key(a)} = {scalar(b)}")

    table(raw, "")
    return "\n".join(lines).strip() + "\n"
