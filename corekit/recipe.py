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
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from corekit.errors import RecipeError, did_you_mean

Raw = dict[str, Any]


def _opts() -> Any:
    return attrs.field(factory=dict)


@attrs.define
class Component:
    """A named component and the options passed to its factory. ``init_from = "STAGE:PART"``
    (encoders) loads the weights of part PART saved by an earlier stage STAGE; ``weights =
    "PATH"`` loads a safetensors or torch file (``corekit.weights``)."""

    type: str
    init_from: str | None = None
    weights: str | None = None
    options: dict[str, Any] = _opts()


@attrs.define
class Head:
    """A head: ``input`` names an encoder or another head it reads. ``share = "other"`` applies
    head ``other``'s module (one set of parameters) to this head's own ``input`` instead of
    building a new one; ``init_from = "STAGE:PART"`` loads an earlier stage's weights."""

    type: str | None = None
    input: str = "backbone"
    share: str | None = None
    init_from: str | None = None
    weights: str | None = None
    options: dict[str, Any] = _opts()


@attrs.define
class Loss:
    """A weighted loss term, active from ``start_epoch`` (0-based) on."""

    type: str
    weight: float = 1.0
    start_epoch: int = 0
    options: dict[str, Any] = _opts()


@attrs.define
class State:
    """A named training state (``[state.NAME]``) of a registered state type; ``init_from =
    "STAGE:NAME"`` starts it from the state NAME saved by an earlier stage."""

    type: str
    init_from: str | None = None
    options: dict[str, Any] = _opts()


@attrs.define
class Target:
    """Short form of ``[state.target] type = "ema"``: an EMA target branch over ``parts``
    (encoders and heads) of the online network; other keys are options of the ``ema`` type."""

    parts: list[str] = attrs.field(factory=lambda: ["backbone"])
    momentum: float = 0.996
    schedule: Literal["constant", "cosine"] = "constant"
    options: dict[str, Any] = _opts()


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
    source: Literal["main", "reference"] = "main"
    n_clusters: int | None = None
    subset: int | None = None

    def trained_on(self) -> str:
        """The name of the set the stage trains on: ``reference`` where ``source`` picks it
        (and it is given), else ``name``."""
        return self.reference if self.source == "reference" and self.reference else self.name


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
    """Short form of ``[state.bank] type = "memory_bank"``: one feature per dataset index,
    refreshed after each optimizer step; other keys are options of the ``memory_bank`` type."""

    source: str = "online:backbone"
    momentum: float = 0.5
    view: int = 0
    options: dict[str, Any] = _opts()


@attrs.define
class Optimizer:
    """A registered optimizer (``type``) over the trainable parameters. ``lr_mult`` scales the
    lr of parameters under a prefix (e.g. ``{"heads.pred" = 10}``); ``no_decay_norm_bias``
    exempts biases and norm weights from weight decay; other keys (``momentum``,
    ``nesterov``, ``betas``, ...) are options of the optimizer type."""

    type: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 0.0
    lr_mult: dict[str, float] = attrs.field(factory=dict)
    no_decay_norm_bias: bool = False
    options: dict[str, Any] = _opts()


@attrs.define
class Schedule:
    """A registered learning-rate schedule (``constant``, ``cosine``, ``multistep``,
    ``fixmatch_cosine``, ...); other keys (``warmup_epochs``, ``cosine_epochs``, ...) are
    options of the schedule type."""

    type: str = "constant"
    options: dict[str, Any] = _opts()


@attrs.define
class Sampler:
    """A registered sampler (``shuffle``, ``cluster_balanced``, ...) and its options."""

    type: str = "shuffle"
    options: dict[str, Any] = _opts()


FixedPrecision = Literal["fp32", "bf16", "fp16"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]
FixedMemoryFormat = Literal["contiguous", "channels_last"]
MemoryFormat = Literal["contiguous", "channels_last", "auto"]


@attrs.define
class Train:
    """The M-step loop and its numerics.

    ``precision`` (autocast dtype), ``memory_format`` (of the network and its inputs) and
    ``compile`` (``torch.compile`` of every encoder and head, falling back to eager with a
    message where it fails) may each be ``"auto"``: chosen at stage start by timing a few real
    steps of every candidate (``corekit.engine.numerics``).
    """

    epochs: int = 10
    batch_size: int = 256
    drop_last: bool = True
    steps_per_epoch: int | None = None
    optimizer: Optimizer = attrs.field(factory=Optimizer)
    schedule: Schedule = attrs.field(factory=Schedule)
    precision: Precision = "fp32"
    memory_format: MemoryFormat = "contiguous"
    compile: bool | Literal["auto"] = False
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    freeze: list[str] = attrs.field(factory=list)
    sampler: Sampler = attrs.field(factory=Sampler)
    eval_every: int = 1
    checkpoint_every: int = 1
    time_phases: bool = False  # seconds per loop phase into metrics.jsonl (syncs CUDA)
    budget: str | float | None = None  # wall-clock cap: "10m", "1h30m", "90s" (corekit.budget)


@attrs.define
class Eval:
    """How clusters are read off: ``"clusterer"`` (E-step on ``features``) or
    ``"head:[BRANCH:]NAME"`` (argmax of a head's output; e.g. ``"head:target:cluster"`` reads
    the EMA target's copy)."""

    assign: str = "clusterer"
    features: str | None = None
    batch_size: int = 512


@attrs.define
class Stage:
    """One training stage: everything a single run needs.

    Hand-off from the previous stage: every part with the same name carries its weights unless
    ``fresh = true`` (all parts new) or ``fresh = [parts]``; ``carry = [parts]`` carries only
    those. ``drop = ["losses.entropy", "model.heads.cluster"]`` removes tables the stage would
    inherit from the top level.
    """

    name: str = "main"
    fresh: bool | list[str] = False
    carry: list[str] | None = None
    drop: list[str] = attrs.field(factory=list)
    data: Data = attrs.field(factory=Data)
    model: Model = attrs.field(factory=Model)
    augment: Augment = attrs.field(factory=Augment)
    losses: dict[str, Loss] = attrs.field(factory=dict)
    state: dict[str, State] = attrs.field(factory=dict)
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

    def stage(self, name: str) -> Stage:
        """The stage called ``name``."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise RecipeError(f"--stage {name!r}: no such stage; "
                          f"{did_you_mean(name, [s.name for s in self.stages])}")


COMPONENT_CLASSES = (Component, Head, Loss, State, Clusterer, Schedule, Sampler)

BIG = 1e9
RANGES: dict[tuple[type, str], tuple[float, float, str]] = {
    # (class, field): (low, high, "[]" closed or "(]" open at low); None values are not checked
    (Loss, "weight"): (-1e6, 1e6, "[]"),
    (Loss, "start_epoch"): (0, BIG, "[]"),
    (Target, "momentum"): (0, 1, "[]"),
    (Data, "n_clusters"): (1, BIG, "[]"),
    (Data, "subset"): (1, BIG, "[]"),
    (Augment, "views"): (1, 64, "[]"),
    (Augment, "size"): (1, 4096, "[]"),
    (Clusterer, "every"): (0, BIG, "[]"),
    (MemoryBank, "momentum"): (0, 1, "[]"),
    (MemoryBank, "view"): (0, 63, "[]"),
    (Optimizer, "lr"): (0, 10, "(]"),
    (Optimizer, "weight_decay"): (0, 1, "[]"),
    (Train, "epochs"): (0, 100_000, "[]"),
    (Train, "batch_size"): (1, BIG, "[]"),
    (Train, "steps_per_epoch"): (1, BIG, "[]"),
    (Train, "grad_clip"): (0, BIG, "(]"),
    (Train, "eval_every"): (0, BIG, "[]"),
    (Train, "checkpoint_every"): (0, BIG, "[]"),
    (Eval, "batch_size"): (1, BIG, "[]"),
}
"""Every numeric range of the recipe schema, checked in one place (``build``)."""
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _range_problem(value: Any, bounds: tuple[float, float, str]) -> str | None:
    low, high, kind = bounds
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        inside = (low < v if kind[0] == "(" else low <= v) and v <= high and v == v
        if not inside:
            shown = f"{low:g} {'<' if kind[0] == '(' else '<='} value <= {high:g}"
            return f"{v!r} is out of range; expected {shown}"
    return None
META_KEYS = {"name", "description", "extends", "requires", "presets", "stage", "stages",
             "auto", "preset"}


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Validate ``value`` against annotation ``tp``; errors name ``path``."""
    tp, optional = unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise RecipeError(f"{path}: a value is required")
    origin = typing.get_origin(tp)
    if attrs.has(tp):
        if isinstance(value, str) and tp in COMPONENT_CLASSES:
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
        raise RecipeError(_union_error(value, typing.get_args(tp), errors, path))
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
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            shown = " or ".join(repr(c) for c in choices)
            raise RecipeError(f"{path}: {value!r} is not one of {shown}; "
                              f"{did_you_mean(str(value), [str(c) for c in choices])}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise RecipeError(f"{path}: expected {tp.__name__}, got {value!r}")
    if not isinstance(value, tp):
        raise RecipeError(f"{path}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _expected(tp: Any) -> str:
    """What a value of annotation ``tp`` looks like in TOML, for an error message."""
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(c) for c in typing.get_args(tp))
    if attrs.has(tp) or typing.get_origin(tp) is dict:
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list"}.get(typing.get_origin(tp) or tp, str(tp))


def _union_error(value: Any, alternatives: tuple[Any, ...], errors: list[str], path: str
                 ) -> str:
    """The message for ``value`` matching none of ``alternatives`` (their ``errors``): the
    error from inside a table or list where the value got that far, else every alternative."""
    deeper = [e for e in errors if e.startswith((f"{path}.", f"{path}["))]
    if deeper:
        return deeper[0]
    shown = " or ".join(_expected(alt) for alt in alternatives)
    choices = [str(c) for alt in alternatives if typing.get_origin(alt) is Literal
               for c in typing.get_args(alt)]
    suggestion = did_you_mean(str(value), choices) if isinstance(value, str) else ""
    hint = f"; {suggestion}" if suggestion.startswith("did you mean") else ""
    return f"{path}: expected {shown}, got {type(value).__name__} {value!r}{hint}"


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
    for key, value in kwargs.items():
        bounds = RANGES.get((cls, key))
        problem = _range_problem(value, bounds) if bounds and value is not None else None
        if problem:
            raise RecipeError(f"{path + '.' if path else ''}{key}: {problem}")
    if cls is Train and not DEVICE.fullmatch(str(kwargs.get("device", "auto"))):
        raise RecipeError(f"{path + '.' if path else ''}device: {kwargs['device']!r} is not a "
                          "device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if cls is Optimizer and any(m <= 0 for m in kwargs.get("lr_mult", {}).values()):
        raise RecipeError(f"{path}.lr_mult: every multiplier must be > 0")
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
    if keys[0] == "stage" and not isinstance(raw.get("stage"), list):
        raise RecipeError(f"--set {'.'.join(keys)}: the recipe has no [[stage]] tables; set "
                          f"the key at the top level (--set {'.'.join(keys[2:]) or 'KEY'}=...)")
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
    """A TOML file as a dict; a missing file, invalid UTF-8 (or a UTF-8 BOM, which TOML does not
    allow) and invalid TOML are RecipeErrors that say where."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise RecipeError(f"recipe file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise RecipeError(f"recipe file {path} is a folder, not a .toml file") from exc
    if data.startswith(b"\xef\xbb\xbf"):
        raise RecipeError(f"recipe file {path} starts with a UTF-8 BOM, which TOML does not "
                          "allow; save it as UTF-8 without BOM")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise RecipeError(f"recipe file {path} is not valid UTF-8 (byte "
                          f"0x{data[exc.start]:02x} on line {line}); save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe file {path} is not valid TOML: {exc}") from exc


def resolve_raw(name_or_path: str, find: Callable[[str], Path], data: str | None = None,
                _seen: tuple[str, ...] = ()) -> Raw:
    """The raw dict of a recipe with its ``extends`` chain merged in, resolved for ``data``.

    Each recipe of the chain is applied whole before its child: the parent (resolved for the
    data set, its preset included), then the child's own tables, then the child's preset for
    the data set. So a child's ``train.epochs = 3`` means 3 epochs under ``--data digits`` even
    when the parent's ``digits`` preset sets another value. ``presets`` holds every preset of
    the chain (for listing and validation); ``preset`` names the one applied.
    """
    if name_or_path in _seen:
        raise RecipeError(f"recipe {name_or_path!r} extends itself: {' -> '.join(_seen)}")
    path = Path(name_or_path) if name_or_path.endswith(".toml") else find(name_or_path)
    raw = load_toml(path)
    raw.setdefault("name", path.stem)
    parent = raw.pop("extends", None)
    own_presets = raw.pop("presets", {})
    if not isinstance(own_presets, Mapping):
        raise RecipeError(f"{path}: presets: expected a table of dataset names")
    if parent is None:
        out, presets = raw, dict(own_presets)
    else:
        base = resolve_raw(parent, find, data, (*_seen, name_or_path))
        presets = merge(base.pop("presets", {}), own_presets)
        out = merge(base, raw)
    key = dataset_key(data) if data else None
    if key is not None and isinstance(own_presets.get(key), Mapping):
        out = merge(out, own_presets[key])
        out["preset"] = key
    out["presets"] = presets
    return out


def dataset_key(data: str) -> str:
    """The preset key of a ``--data`` value: ``mnist:DIR`` -> ``mnist``."""
    return data.split(":", 1)[0]


def select_data(raw: Raw, data: str | None) -> Raw:
    """Merge the preset for ``data`` (if the recipe has one) and set ``data.name``."""
    presets = raw.get("presets", {})
    if data is None:
        return raw
    key = dataset_key(data)
    out = dict(raw)
    if key in presets and raw.get("preset") != key:  # not yet applied by resolve_raw
        out = merge(raw, presets[key])
        out["preset"] = key
    return merge(out, {"data": {"name": data}})


def _named_stage_overrides(raw: Raw) -> list[Raw]:
    """The ``[[stage]]`` tables with ``stages.<name>`` tables (from a preset or ``--set``)
    merged into the stage of that name, so a preset can change one stage."""
    stages = raw.get("stage") or [{}]
    if not isinstance(stages, list) or not all(isinstance(t, Mapping) for t in stages):
        raise RecipeError("stage: expected [[stage]] tables (a list of tables)")
    stage_raws = [dict(t) for t in stages]
    by_name = raw.get("stages") or {}
    if not isinstance(by_name, Mapping):
        raise RecipeError("stages: expected a table of stage names, e.g. [stages.target.train]")
    names = [str(s.get("name", "main" if len(stage_raws) == 1 else f"stage{i + 1}"))
             for i, s in enumerate(stage_raws)]
    for name, body in by_name.items():
        if name not in names:
            raise RecipeError(f"stages.{name}: no stage is called {name!r}; "
                              f"{did_you_mean(name, names)}")
        if not isinstance(body, Mapping):
            raise RecipeError(f"stages.{name}: expected a table")
        index = names.index(name)
        stage_raws[index] = merge(stage_raws[index], body)
    return stage_raws


def _drop(merged: Raw, where: str) -> Raw:
    """Remove each dotted path of the stage's ``drop`` list from its merged table."""
    drops = merged.get("drop", [])
    if not isinstance(drops, list) or not all(isinstance(d, str) for d in drops):
        raise RecipeError(f"{where + '.' if where else ''}drop: expected a list of dotted keys, "
                          'e.g. drop = ["losses.entropy"]')
    out = copy.deepcopy(merged)
    for dotted in drops:
        *parents, last = dotted.split(".")
        node: Any = out
        for key in parents:
            node = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(node, dict) or last not in node:
            raise RecipeError(f"{where + '.' if where else ''}drop: {dotted!r} is not in the "
                              "stage's recipe (nothing to drop)")
        del node[last]
    return out


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
    stage_raws = _named_stage_overrides(raw)
    stages = []
    for i, stage_raw in enumerate(stage_raws):
        where = f"stage[{i}]" if "stage" in raw else ""
        merged = _drop(merge(sections, stage_raw), where)
        stage = build(Stage, merged, where)
        for name, loss in stage.losses.items():
            if stage.train.epochs and loss.start_epoch >= stage.train.epochs:
                warnings.warn(f"{where + '.' if where else ''}losses.{name}.start_epoch = "
                              f"{loss.start_epoch} is past the last epoch "
                              f"({stage.train.epochs - 1}): the term never trains", stacklevel=2)
        if stage.train.budget is not None:
            from corekit.budget import parse_budget

            parse_budget(stage.train.budget, f"{where + '.' if where else ''}train.budget")
        stages.append(stage)
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
    auto: Callable[[Raw, Raw, str], Raw] | None = None,
) -> Recipe:
    """Load, extend, pick the dataset preset, apply ``--set`` overrides and validate.
    ``auto(recipe, selected, data)`` may replace the selected raw recipe (the ``auto`` preset
    of ``corekit.auto`` when no preset fits the data)."""
    base = resolve_raw(name_or_path, find, data)
    raw = select_data(base, data)
    if auto is not None and data is not None:
        raw = auto(base, raw, data)
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
