"""The composer: a validated recipe stage -> the networks, state, views, losses, E-step,
sampler, optimizer and schedule to train, each built by a named builder.

Everything is checked before training starts: unknown components and options, parts that do
not exist, outputs of the wrong kind, and every ``Need`` of every component (checked by the
registered need kinds). All problems of a stage are reported in one ``CompositionError``, each
naming the recipe key and what to add.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from corekit import recipe as rc
from corekit.builder import build_component, takes_option
from corekit.components.augment import eval_transform
from corekit.components.optimizers import param_groups
from corekit.contracts import DatasetLabeler
from corekit.data import ImageSet
from corekit.errors import RecipeError, UserError, did_you_mean
from corekit.handoff import StageOutputs, start_network, start_state
from corekit.lifecycle import Hooks
from corekit.needs import Need, NeedContext
from corekit.network import Branch, Network, Networks
from corekit.normalization import input_stats
from corekit.parts import assign_need, parse_feature
from corekit.plugins import Plugins
from corekit.state import PseudoLabels
from corekit.views import ViewName, stream_view, view_key
from corekit.weights import load_weights

PSEUDO = "pseudo"
STATE_INPUT = "state:"
"""A labeler input that names a state (``"state:bank"``) rather than a part."""


class CompositionError(RecipeError):
    """Every problem found while composing one or more stages, listed in one message."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"the recipe does not compose ({count}):\n"
                         + "\n".join(f"  - {p}" for p in problems))


@attrs.define
class Problems:
    """Collects the user errors of a stage so that all of them are reported together."""

    prefix: str = ""
    items: list[str] = attrs.field(factory=list)

    def add(self, message: str) -> None:
        self.items.append(f"{self.prefix}{message}")

    @contextmanager
    def collect(self) -> Iterator[None]:
        try:
            yield
        except CompositionError as exc:
            self.items.extend(f"{self.prefix}{p}" for p in exc.problems)
        except UserError as exc:
            self.add(str(exc))

    def raise_if_any(self) -> None:
        if self.items:
            raise CompositionError(self.items)


@attrs.define(kw_only=True)
class WeightedLoss:
    """A loss term of the total: ``weight · fn(step)`` from epoch ``start_epoch`` on;
    ``type`` is the registered loss type the recipe named (``[losses.<name>] type``)."""

    name: str
    type: str
    fn: Callable[..., torch.Tensor]
    weight: float
    start_epoch: int

    def active(self, epoch: int) -> bool:
        return epoch >= self.start_epoch and self.weight != 0


@attrs.define(kw_only=True)
class Composed:
    """What the engine runs for one stage.

    ``views``: the view pipelines by name, in order (``corekit.views``): ``{0: ..., 1: ...}``
    for ``augment.views = N``, ``{"weak": ..., "strong": ...}`` for ``[augment.views.NAME]``
    tables. Whoever builds a step's views (the trainer, a stream of batches) looks pipelines
    up here by name."""

    stage: rc.Stage
    train_set: ImageSet
    eval_set: ImageSet
    reference: ImageSet | None
    n_clusters: int
    model: Networks
    state: dict[str, nn.Module]
    views: dict[ViewName, nn.Module]
    eval_transform: nn.Module
    losses: list[WeightedLoss]
    clusterer: Any | None
    sampler: Any
    optimizer: torch.optim.Optimizer | None
    base_lrs: list[float]
    schedule: Any
    hooks: Hooks
    state_types: dict[str, str] = attrs.field(factory=dict)
    labelers: dict[str, Any] = attrs.field(factory=dict)

    @property
    def step_labelers(self) -> dict[str, Any]:
        """The per-step labelers (``labeler(step) -> (labels, mask)``) by name."""
        return {n: fn for n, fn in self.labelers.items() if not isinstance(fn, DatasetLabeler)}

    @property
    def dataset_labelers(self) -> dict[str, DatasetLabeler]:
        """The dataset-level labelers (``label(inputs) -> LabelRows``) by name."""
        return {n: fn for n, fn in self.labelers.items() if isinstance(fn, DatasetLabeler)}

    @property
    def pseudo(self) -> PseudoLabels | None:
        """The E-step's pseudo-label buffer (state ``pseudo``), if the stage has an E-step."""
        return self.state.get(PSEUDO)

    def outputs(self, epochs: int = 0) -> StageOutputs:
        """What this stage hands to the next after ``epochs`` epochs: weights and state (with
        each state's registered type)."""
        data = self.train_set
        info = {"name": data.name, "channels": data.channels,
                "size": self.stage.augment.size or _side(data), "mean": list(data.mean),
                "std": list(data.std), "n_clusters": self.n_clusters, "n_images": len(data)}
        return StageOutputs.of(self.stage.name, self.model.online, self.state, epochs, info,
                               self.state_types)


# -- named builders ---------------------------------------------------------------------------
def _head_order(heads: dict[str, rc.Head], encoders: set[str]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in encoders:
            return
        if name in visiting:
            raise RecipeError(f"model.heads.{name}.input: heads read each other in a cycle")
        visiting.add(name)
        spec = heads[name]
        for source, key in ((spec.input, "input"), (spec.share, "share")):
            if source is None:
                continue
            known = source in heads or (key == "input" and source in encoders)
            if not known:
                what = "not a head" if key == "share" else "neither an encoder nor a head"
                raise RecipeError(
                    f"model.heads.{name}.{key}: {source!r} is {what}; "
                    f"{did_you_mean(source, [*heads] if key == 'share' else [*encoders, *heads])}"
                )
            visit(source)
        visiting.discard(name)
        order.append(name)

    for name in heads:
        visit(name)
    return order


def _side(data: ImageSet) -> int:
    size = data.size
    return size if isinstance(size, int) else max(size)


def build_network(plugins: Plugins, stage: rc.Stage, data: ImageSet, n_clusters: int) -> Network:
    """Encoders and heads of ``stage`` (shared heads reuse their owner's module), with its
    frozen parts switched off."""
    size = stage.augment.size or _side(data)
    context = {"in_channels": data.channels, "image_size": size, "n_clusters": n_clusters}
    specs = {"backbone": stage.model.backbone, **stage.model.encoders}
    labels: dict[str, str] = {}
    encoders = {}
    for name, spec in specs.items():
        path = "model.backbone" if name == "backbone" else f"model.encoders.{name}"
        encoders[name] = build_component(plugins, "backbone", spec.type, spec.options, path,
                                         **context)
        if spec.weights:
            load_weights(encoders[name], Path(spec.weights).expanduser(), f"{path}.weights")
        labels[name] = plugins.registry.get("backbone", spec.type).qualified
    heads: dict[str, nn.Module] = {}
    shares: dict[str, str] = {}
    dims = {name: int(module.out_dim) for name, module in encoders.items()}
    for name in _head_order(stage.model.heads, set(encoders)):
        spec = stage.model.heads[name]
        path = f"model.heads.{name}"
        if spec.share is not None:
            if spec.type is not None or spec.options:
                raise RecipeError(f"{path}: a head that shares {spec.share!r} takes only "
                                  "`share` and `input`; remove `type` and its options")
            owner = shares.get(spec.share, spec.share)
            if dims[spec.input] != dims[stage.model.heads[owner].input]:
                raise RecipeError(f"{path}.input: {spec.input!r} is {dims[spec.input]}-d but "
                                  f"head {owner!r} reads {dims[stage.model.heads[owner].input]}-d")
            shares[name] = owner
            dims[name] = dims[owner]
            labels[name] = f"shares {owner!r}"
            continue
        if spec.type is None:
            raise RecipeError(f"{path}: set `type` (a head) or `share` (another head's name)")
        heads[name] = build_component(plugins, "head", spec.type, spec.options, path,
                                      in_dim=dims[spec.input], **context)
        if spec.weights:
            load_weights(heads[name], Path(spec.weights).expanduser(), f"{path}.weights")
        dims[name] = int(heads[name].out_dim)
        labels[name] = plugins.registry.get("head", spec.type).qualified
    parts = [*encoders, *heads, *shares]
    for name in stage.train.freeze:
        if name not in parts:
            raise RecipeError(f"train.freeze: {name!r} is not a part; {did_you_mean(name, parts)}")
    inputs = {name: spec.input for name, spec in stage.model.heads.items()}
    return Network(encoders, heads, inputs, frozenset(stage.train.freeze), shares, labels,
                   stage.train.freeze_bn)


def state_specs(stage: rc.Stage) -> dict[str, tuple[str, rc.State]]:
    """Every named state of ``stage`` with its recipe path, short forms first: ``[model.target]``
    is the ``ema`` state ``target``, ``[memory_bank]`` the ``memory_bank`` state ``bank``."""
    specs: dict[str, tuple[str, rc.State]] = {}
    if stage.model.target is not None:
        t = stage.model.target
        options = {"parts": t.parts, "momentum": t.momentum, "schedule": t.schedule, **t.options}
        specs["target"] = ("model.target", rc.State("ema", options=options))
    if stage.memory_bank is not None:
        mb = stage.memory_bank
        options = {"source": mb.source, "momentum": mb.momentum, "view": mb.view, **mb.options}
        specs["bank"] = ("memory_bank", rc.State("memory_bank", options=options))
    for name, spec in stage.state.items():
        if name in specs:
            raise RecipeError(f"state.{name}: the name is taken by the short form "
                              f"[{specs[name][0]}]; rename one of them")
        specs[name] = (f"state.{name}", spec)
    return specs


def build_state(plugins: Plugins, stage: rc.Stage, network: Network, n_images: int,
                n_clusters: int, steps_per_epoch: int, problems: Problems) -> dict[str, nn.Module]:
    """The stage's named state, in recipe order; ``pseudo`` is added when it has an E-step."""
    state: dict[str, nn.Module] = {}
    context = {"network": network, "n_images": n_images, "n_clusters": n_clusters,
               "steps_per_epoch": steps_per_epoch,
               "total_steps": stage.train.epochs * steps_per_epoch}
    with problems.collect():
        specs = state_specs(stage)
        for name, (path, spec) in specs.items():
            with problems.collect():
                # seeded by (seed, name): adding a state never changes another's init
                generator = torch.Generator().manual_seed(stage.train.seed * 1_000_003
                                                          + zlib.crc32(name.encode()))
                state[name] = build_component(plugins, "state", spec.type, spec.options, path,
                                              generator=generator, **context)
    if stage.clusterer is not None and PSEUDO not in state:
        state[PSEUDO] = PseudoLabels(n_images, n_clusters)
    return state


def view_specs(aug: rc.Augment) -> dict[ViewName, tuple[str, rc.View]]:
    """Every view of ``aug`` by name, in order, with its recipe path: view i of ``views = N``
    is ``type`` (or ``type[i]``) with the table's options, at path ``augment``; a named view
    is its own table, at ``augment.views.NAME``."""
    if not isinstance(aug.views, int):
        return {name: (f"augment.views.{name}", spec) for name, spec in aug.views.items()}
    types = aug.type if isinstance(aug.type, list) else [aug.type] * aug.views
    if len(types) != aug.views:
        raise RecipeError(f"augment.type: {len(types)} pipelines for {aug.views} views")
    return {i: ("augment", rc.View(t, aug.options)) for i, t in enumerate(types)}


def describe_views(aug: rc.Augment) -> str:
    """The views in one line, ``weak: weak, strong: strong variant='fixmatch'`` (what
    ``deepclust check`` prints)."""
    parts = []
    for name, (_, spec) in view_specs(aug).items():
        options = "".join(f" {key}={value!r}" for key, value in spec.options.items())
        parts.append(f"{name}: {spec.type}{options}")
    return ", ".join(parts)


def build_views(plugins: Plugins, stage: rc.Stage, data: ImageSet,
                backbone: nn.Module) -> tuple[dict[ViewName, nn.Module], nn.Module]:
    """The view pipelines by name (``view_specs``) and the evaluation transform, each
    normalised as ``augment.normalize`` says (``corekit.normalization``; ``backbone`` is the
    built one)."""
    aug = stage.augment
    specs = view_specs(aug)
    size = aug.size or _side(data)
    mean, std = input_stats(stage, data, backbone) or (None, None)
    context = {"size": size, "channels": data.channels, "mean": mean, "std": std}
    views = {name: build_component(plugins, "augmentation", spec.type, spec.options, path,
                                   **context)
             for name, (path, spec) in specs.items()}
    return views, eval_transform(size, data.channels, mean, std)


def build_losses(plugins: Plugins, stage: rc.Stage, n_clusters: int,
                 problems: Problems) -> list[WeightedLoss]:
    losses = []
    for name, spec in stage.losses.items():
        with problems.collect():
            fn = build_component(plugins, "loss", spec.type, spec.options, f"losses.{name}",
                                 n_clusters=n_clusters)
            losses.append(WeightedLoss(name=name, type=spec.type, fn=fn, weight=spec.weight,
                                      start_epoch=spec.start_epoch))
    if stage.losses and stage.train.epochs == 0:
        problems.add("train.epochs: 0 epochs train no loss; set train.epochs >= 1, or drop "
                     "the [losses] tables to only cluster the features")
    if not stage.losses and stage.train.epochs > 0:
        problems.add("losses: the recipe has no loss; add a [losses.<name>] table (or set "
                     "train.epochs = 0 to only cluster the features)")
    starts = [loss.start_epoch for loss in losses if loss.weight != 0]
    if losses and stage.train.epochs > 0 and 0 not in starts:
        why = f"the first term starts at epoch {min(starts)}" if starts else "every weight is 0"
        problems.add(f"losses: no term trains in the first epoch ({why}); give one a weight "
                     "other than 0 and start_epoch = 0")
    return losses


def build_clusterer(plugins: Plugins, stage: rc.Stage, n_clusters: int) -> Any | None:
    spec = stage.clusterer
    if spec is None:
        return None
    clusterer = build_component(plugins, "clusterer", spec.type, spec.options, "clusterer",
                                n_clusters=n_clusters)
    if spec.per_batch and not callable(getattr(clusterer, "update", None)):
        raise RecipeError(f"clusterer.per_batch: {spec.type!r} has no update(features) "
                          "method; use a per-batch clusterer or set per_batch = false")
    return clusterer


def build_labelers(plugins: Plugins, stage: rc.Stage, n_clusters: int, n_images: int,
                   state: Mapping[str, nn.Module], problems: Problems) -> dict[str, Any]:
    """Every ``[pseudo_labeler.NAME]``, with its table checked against its kind: a
    dataset-level labeler takes ``inputs`` (exactly the ones it reads) and ``writes``, a
    per-step one none of the dataset-level keys."""
    labelers: dict[str, Any] = {}
    for name, spec in stage.pseudo_labeler.items():
        path = f"pseudo_labeler.{name}"
        with problems.collect():
            options = dict(spec.options)
            if spec.view is not None and takes_option(plugins, "pseudo_labeler", spec.type, "view"):
                options["view"] = spec.view  # a per-step labeler's own view
            labeler = build_component(
                plugins, "pseudo_labeler", spec.type, options, path,
                n_clusters=n_clusters,
                make_clusterer=lambda table, key, p=path: _clusterer_of(
                    plugins, table, f"{p}.{key}", n_clusters, stage.train.seed))
            for problem in _labeler_table_problems(labeler, spec, n_images, state):
                problems.add(f"{path}.{problem}")
            if spec.view is not None and not isinstance(labeler, DatasetLabeler) \
                    and "view" not in options:
                problems.add(f"{path}.view: {spec.type!r} takes no view; remove the key")
            labelers[name] = labeler
    return labelers


def describe_streams(train: rc.Train) -> str:
    """The streams of a step for ``deepclust check``: ``labelled: 64 rows of reliable (weak),
    unlabelled: 448 (weak, strong); concat labelled:weak, ...``; ``main`` for one stream."""
    streams = train.stream_specs()
    if not streams:
        return f"main: {train.batch_size}"
    parts = []
    for name, spec in streams.items():
        what = f"{spec.batch_size} rows of {spec.rows}" if spec.rows else str(spec.batch_size)
        views = f" ({', '.join(map(str, spec.views))})" if spec.views is not None else ""
        parts.append(f"{name}: {what}{views}")
    concat = f"; concat {', '.join(train.concat)}" if train.concat else ""
    return ", ".join(parts) + concat


def describe_labelers(composed: Composed) -> str:
    """One phrase per labeler of ``composed`` for ``deepclust check``: ``graph: cluster ->
    targets (before training)``, ``confident: confidence_threshold (per step)``."""
    phrases = []
    for name, labeler in composed.labelers.items():
        spec = composed.stage.pseudo_labeler[name]
        if not isinstance(labeler, DatasetLabeler):
            phrases.append(f"{name}: {spec.type} (per step)")
            continue
        when = ("at the stage's end" if spec.when == "stage_end"
                else "before training" + (f" and every {spec.every} epochs" if spec.every
                                          else ""))
        sample = f", {spec.sample} images" if spec.sample else ""
        phrases.append(f"{name}: {spec.type} -> {spec.writes} ({when}{sample})")
    return ", ".join(phrases) or "-"


def _clusterer_of(plugins: Plugins, table: str | dict[str, Any], path: str,
                  n_clusters: int, seed: int) -> Any:
    """A registered clusterer from its name or its table (``{type = "spectral", ...}``),
    seeded by the stage's ``seed`` unless the table sets one (where the clusterer takes one)."""
    spec = table if isinstance(table, dict) else {"type": table}
    if "type" not in spec:
        raise RecipeError(f"{path}: name the clusterer's type, e.g. {{type = \"kmeans\"}}")
    options = {k: v for k, v in spec.items() if k != "type"}
    if takes_option(plugins, "clusterer", str(spec["type"]), "seed"):
        options.setdefault("seed", seed)
    return build_component(plugins, "clusterer", str(spec["type"]), options, path,
                           n_clusters=n_clusters)


def _labeler_table_problems(labeler: Any, spec: rc.PseudoLabeler, n_images: int,
                            state: Mapping[str, nn.Module]) -> list[str]:
    """What is wrong with a labeler's table for its kind (each starts with the key)."""
    if not isinstance(labeler, DatasetLabeler):
        given = [key for key, unset in (("inputs", {}), ("sample", None), ("writes", None))
                 if getattr(spec, key) != unset]
        return [f"{key}: {spec.type!r} labels each step (a loss reads it as targets = "
                "<this name>); remove the key" for key in given]
    problems = []
    wanted = dict(labeler.reads)
    for key in sorted(set(wanted) - set(spec.inputs)):
        problems.append(f"inputs: {spec.type!r} reads input {key!r}; add it, e.g. inputs = "
                        f"{{{key} = \"online:backbone\"}}")
    for key in sorted(set(spec.inputs) - set(wanted)):
        problems.append(f"inputs.{key}: {spec.type!r} takes no input {key!r}; "
                        f"{did_you_mean(key, wanted)}")
    for key, source in spec.inputs.items():
        named = source.removeprefix(STATE_INPUT)
        if source.startswith(STATE_INPUT) and named in state \
                and not callable(getattr(state[named], "read", None)):
            problems.append(f"inputs.{key}: state {named!r} has no read() -> (N, D) rows to "
                            "label from; name a part or a memory bank")
    if spec.writes is None:
        problems.append("writes: name the [state.NAME] of type 'targets' the labels go to")
    if spec.sample is not None and spec.sample > n_images:
        problems.append(f"sample: {spec.sample} images of a set of {n_images}; sample at most "
                        f"{n_images} (or remove the key to label every image)")
    return problems


def stream_problems(stage: rc.Stage, state_types: Mapping[str, str], n_images: int
                    ) -> list[str]:
    """What is wrong with ``train.streams`` and ``train.concat`` (each with its key): a view or
    state no table defines, a batch larger than the set, a concat entry naming no stream's
    view."""
    problems: list[str] = []
    streams = stage.train.stream_specs()
    names = stage.augment.view_names()
    for name, spec in streams.items():
        path = f"train.streams.{name}"
        for view in spec.views or []:
            try:
                view_key(names, view)
            except KeyError as exc:
                problems.append(f"{path}.views: {exc.args[0]}")
        if spec.rows is not None and state_types.get(spec.rows) != "targets":
            found = [n for n, t in state_types.items() if t == "targets"]
            problems.append(f"{path}.rows: {spec.rows!r} is not a state of type 'targets'; "
                            f"add [state.{spec.rows}] type = 'targets' written by a labeler "
                            f"({did_you_mean(spec.rows, found)})")
        if spec.rows is None and spec.draw == "shuffle" and spec.batch_size > n_images:
            problems.append(f"{path}.batch_size: {spec.batch_size} images a step from a set of "
                            f"{n_images}; lower it, or draw = 'replacement'")
    for i, entry in enumerate(stage.train.concat):
        stream, view = stream_view(entry)
        where = f"train.concat[{i}]"
        if stream not in streams:
            problems.append(f"{where}: {entry!r} names no stream; write 'STREAM:VIEW' with a "
                            f"stream of train.streams ({did_you_mean(stream, streams)})")
            continue
        given = streams[stream].views if streams[stream].views is not None else names
        try:
            key = view_key(names, view)
        except KeyError as exc:
            problems.append(f"{where}: {exc.args[0]}")
            continue
        if key not in [view_key(names, v) for v in given]:
            problems.append(f"{where}: stream {stream!r} does not get view {view!r}; add it "
                            f"to train.streams.{stream}.views")
    return problems


def labeler_input_needs(stage: rc.Stage, labelers: Mapping[str, Any]) -> list[tuple[str, Need]]:
    """(who, need) for each input of each dataset-level labeler: the part it names, read as
    the labeler reads it (a stack of heads too, for an input in its ``stacked_inputs``), or the
    state (one with ``read()``)."""
    found: list[tuple[str, Need]] = []
    for name, labeler in labelers.items():
        if not isinstance(labeler, DatasetLabeler):
            continue
        spec = stage.pseudo_labeler[name]
        for key, source in spec.inputs.items():
            who = f"pseudo_labeler.{name}.inputs.{key}"
            if key not in labeler.reads:
                continue
            if source.startswith(STATE_INPUT):
                found.append((who, Need.state(source.removeprefix(STATE_INPUT))))
                continue
            branch, part = parse_feature(source, who)
            stacked = key in getattr(labeler, "stacked_inputs", ())
            found.append((who, Need.output(part, branch, reads=labeler.reads[key],
                                           stack=stacked)))
        if spec.writes is not None:
            found.append((f"pseudo_labeler.{name}.writes", Need.state(spec.writes, "targets")))
        if spec.view is not None:
            found.append((f"pseudo_labeler.{name}.view", Need.views([spec.view])))
    return found


def build_optimizer(plugins: Plugins, train: rc.Train,
                    network: Network) -> tuple[torch.optim.Optimizer, list[float]]:
    """The registered optimizer over the trainable parameters, one group per ``lr_mult``
    prefix (and per decay setting with ``no_decay``)."""
    opt = train.optimizer
    exempt = opt.decay_exempt()
    try:
        groups = param_groups(network, opt.lr, opt.weight_decay, opt.lr_mult, exempt)
    except ValueError as exc:
        raise RecipeError(f"train.optimizer: {exc}") from None
    optimizer = build_component(plugins, "optimizer", opt.type, opt.options, "train.optimizer",
                                params=groups, lr=opt.lr, weight_decay=opt.weight_decay)
    return optimizer, [g["lr"] for g in optimizer.param_groups]


def build_schedule(plugins: Plugins, train: rc.Train, steps_per_epoch: int) -> Any:
    return build_component(plugins, "schedule", train.schedule.type, train.schedule.options,
                           "train.schedule", steps_per_epoch=steps_per_epoch,
                           epochs=train.epochs)


def build_sampler(plugins: Plugins, train: rc.Train) -> Any:
    return build_component(plugins, "sampler", train.sampler.type, train.sampler.options,
                           "train.sampler")


# -- need checks ------------------------------------------------------------------------------
def declared_needs(composed_parts: Mapping[str, Any], stage: rc.Stage,
                   plugins: Plugins) -> list[tuple[str, Need]]:
    """(who, need) for every component of the stage that reads the step or the model."""
    found: list[tuple[str, Need]] = []
    for who, component in composed_parts.items():
        needs = getattr(component, "needs", None)
        if callable(needs):
            found.extend((who, need) for need in needs())
    spec = stage.clusterer
    if spec is not None:
        branch, part = parse_feature(spec.features, "clusterer.features")
        found.append(("clusterer.features", Need.output(part, branch, reads="any")))
    assigned = assign_need(stage.eval.assign)
    if assigned is None and spec is None:
        found.append(("eval.assign = 'clusterer'", Need.labels()))
    elif assigned is not None:
        found.append(("eval.assign", assigned))
    if stage.eval.features:
        branch, part = parse_feature(stage.eval.features, "eval.features")
        found.append(("eval.features", Need.output(part, branch, reads="any")))
    return found


def check_needs(plugins: Plugins, needs: list[tuple[str, Need]], ctx: NeedContext,
                problems: Problems) -> None:
    """Check each need with its kind's registered checker; an unknown kind is a problem."""
    kinds = plugins.registry.names("need")
    for who, need in needs:
        if not plugins.registry.has("need", need.kind):
            problems.add(f"{who} declares a need of unknown kind {need.kind!r}; "
                         f"{did_you_mean(need.kind, kinds)} (a plugin adds kinds with "
                         "register_need_kinds)")
            continue
        problem = plugins.registry.get("need", need.kind).obj(need, ctx)
        if problem:
            problems.add(f"{who} {problem}")


# -- compose ----------------------------------------------------------------------------------
def _n_clusters(stage: rc.Stage, data: ImageSet) -> int:
    n_clusters = stage.data.n_clusters or data.num_classes
    if not n_clusters:
        raise RecipeError(f"data.n_clusters: {data.name} has no class count; set it (--k N)")
    return n_clusters


def compose(plugins: Plugins, stage: rc.Stage, datasets: Callable[[str], ImageSet],
            device: torch.device, previous: StageOutputs | None = None,
            steps_per_epoch: int = 1,
            earlier: Mapping[str, StageOutputs] | None = None) -> Composed:
    """Build and check everything ``stage`` needs, on ``device``.

    ``previous`` is the hand-off of the stage before (parts with the same name carry their
    weights); ``earlier`` every finished stage by name (for ``init_from``). Raises one
    ``CompositionError`` listing every problem found.
    """
    problems = Problems()
    main = datasets(stage.data.name)
    reference = datasets(stage.data.reference) if stage.data.reference else None
    if stage.data.source == "reference" and reference is None:
        raise RecipeError("data.source = 'reference' needs data.reference = '<dataset>'")
    train_set = reference if stage.data.source == "reference" and reference else main
    n_clusters = _n_clusters(stage, train_set)

    network = build_network(plugins, stage, train_set, n_clusters)
    with problems.collect():
        start_network(stage, network, previous, earlier or {})
    state = build_state(plugins, stage, network, len(train_set), n_clusters, steps_per_epoch,
                        problems)
    state_types: dict[str, str] = {}
    with problems.collect():
        state_types = _state_types(plugins, stage)
        start_state(stage, state, state_types, earlier or {})
    network.to(device)
    for module in state.values():
        module.to(device)
    if stage.train.memory_format == "channels_last":
        network.to(memory_format=torch.channels_last)
    if stage.train.compile is True:
        network.compile_parts()
    branches = {name: s for name, s in state.items() if isinstance(s, Branch)}
    model = Networks(online=network, branches=branches)

    views: dict[ViewName, nn.Module] = {}
    evaluate: nn.Module = nn.Identity()
    with problems.collect():
        views, evaluate = build_views(plugins, stage, train_set, network.part("backbone"))
    losses = build_losses(plugins, stage, n_clusters, problems)
    labelers = build_labelers(plugins, stage, n_clusters, len(train_set), state, problems)
    clusterer = sampler = schedule = None
    with problems.collect():
        clusterer = build_clusterer(plugins, stage, n_clusters)
    with problems.collect():
        sampler = build_sampler(plugins, stage.train)
    with problems.collect():
        schedule = build_schedule(plugins, stage.train, steps_per_epoch)

    readers: dict[str, Any] = {f"state {n!r}": s for n, s in state.items()}
    readers.update({f"loss {w.name!r} ({plugins.registry.get('loss', w.type).qualified})": w.fn
                    for w in losses})
    for problem in stream_problems(stage, _state_types(plugins, stage), len(train_set)):
        problems.add(problem)
    readers.update({f"pseudo_labeler.{n}": fn for n, fn in labelers.items()
                    if not isinstance(fn, DatasetLabeler)})
    if sampler is not None:
        readers[f"train.sampler ({stage.train.sampler.type})"] = sampler
    with problems.collect():
        needs = declared_needs(readers, stage, plugins) + labeler_input_needs(stage, labelers)
        ctx = NeedContext(stage=stage, network=network,
                          branches={"online": network, **{n: b.network for n, b in
                                                          branches.items()}},
                          state=state, state_types=_state_types(plugins, stage),
                          has_estep=clusterer is not None)
        check_needs(plugins, needs, ctx, problems)

    optimizer, base_lrs = None, []
    if stage.train.epochs > 0:
        with problems.collect():
            optimizer, base_lrs = build_optimizer(plugins, stage.train, network)
    hooks = Hooks()
    with problems.collect():
        hooks.extend((f"state.{n}", s) for n, s in state.items())
        hooks.extend((network.describe_part(n), network.part(n)) for n in network.owned())
        hooks.extend((f"losses.{w.name}", w.fn) for w in losses)
        hooks.extend((f"pseudo_labeler.{n}", fn) for n, fn in labelers.items())
        hooks.extend([("clusterer", clusterer), ("train.sampler", sampler)])
    problems.raise_if_any()
    for module in [*views.values(), evaluate, *(w.fn for w in losses)]:
        if isinstance(module, nn.Module):
            module.to(device)
    return Composed(stage=stage, state_types=state_types,
                    train_set=train_set, eval_set=main, reference=reference,
                    n_clusters=n_clusters, model=model, state=state, views=views,
                    eval_transform=evaluate, losses=losses, clusterer=clusterer, sampler=sampler,
                    optimizer=optimizer, base_lrs=base_lrs, schedule=schedule, hooks=hooks,
                    labelers=labelers)


def _state_types(plugins: Plugins, stage: rc.Stage) -> dict[str, str]:
    """Each state's registered type name (aliases and ``plugin.`` prefixes resolved)."""
    registry = plugins.registry
    types = {name: registry.get("state", spec.type).name if registry.has("state", spec.type)
             else spec.type for name, (_, spec) in state_specs(stage).items()}
    if stage.clusterer is not None:
        types.setdefault(PSEUDO, "pseudo_labels")
    return types
