"""The recipe schema: one attrs class per table of a recipe, down to ``Stage`` (everything a
single training run needs) and ``Recipe`` (metadata and stages). A numeric field carries its
range beside it (``ranged``), ``build`` (``corekit.recipe.conversion``) checks it."""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs

from corekit.errors import RecipeError, did_you_mean
from corekit.recipe.checks import BIG, Matches, checked, ranged
from corekit.views import ViewName

Raw = dict[str, Any]
"""A recipe as TOML reads it: nested tables of plain values."""


def _opts() -> Any:
    return attrs.field(factory=dict)


@attrs.frozen
class Component:
    """A named component and the options passed to its factory. ``init_from = "STAGE:PART"``
    (encoders) loads the weights of part PART saved by an earlier stage STAGE; ``weights =
    "PATH"`` loads a safetensors or torch file (``corekit.weights``)."""

    type: str
    init_from: str | None = None
    weights: str | None = None
    options: dict[str, Any] = _opts()


@attrs.frozen
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


@attrs.frozen
class Loss:
    """A weighted loss term, active from ``start_epoch`` (0-based) on."""

    type: str
    weight: float = ranged(1.0, -1e6, 1e6)
    start_epoch: int = ranged(0, 0, BIG)
    options: dict[str, Any] = _opts()


@attrs.frozen
class State:
    """A named training state (``[state.NAME]``) of a registered state type; ``init_from =
    "STAGE:NAME"`` starts it from the state NAME saved by an earlier stage."""

    type: str
    init_from: str | None = None
    options: dict[str, Any] = _opts()


@attrs.frozen
class Target:
    """Short form of ``[state.target] type = "ema"``: an EMA target branch over ``parts``
    (encoders and heads) of the online network; other keys are options of the ``ema`` type."""

    parts: list[str] = attrs.field(factory=lambda: ["backbone"])
    momentum: float = ranged(0.996, 0, 1)
    schedule: Literal["constant", "cosine"] = "constant"
    options: dict[str, Any] = _opts()


@attrs.frozen
class Model:
    """The networks: a primary ``backbone``, extra named ``encoders``, ``heads``, ``target``."""

    backbone: Component = attrs.field(factory=lambda: Component("small_cnn"))
    encoders: dict[str, Component] = attrs.field(factory=dict)
    heads: dict[str, Head] = attrs.field(factory=dict)
    target: Target | None = None


@attrs.frozen
class Data:
    """The training images. ``reference`` names a second dataset; ``source`` picks which one
    this stage trains on; ``n_clusters`` defaults to the dataset's class count."""

    name: str = "digits"
    reference: str | None = None
    source: Literal["main", "reference"] = "main"
    n_clusters: int | None = ranged(None, 1, BIG)
    subset: int | None = ranged(None, 1, BIG)

    def trained_on(self) -> str:
        """The name of the set the stage trains on: ``reference`` where ``source`` picks it
        (and it is given), else ``name``."""
        return self.reference if self.source == "reference" and self.reference else self.name


NormalizeChoice = Literal["dataset", "imagenet", "backbone"]
"""Whose per-channel mean and std normalise the images: the training set's, ImageNet's, or the
ones the backbone's pretrained weights expect."""


@attrs.frozen
class Stats:
    """Explicit normalisation, ``normalize = {mean = [...], std = [...]}``, in [0,1] units: one
    value per channel (or one for all)."""

    mean: list[float] = ranged(attrs.NOTHING, 0, 1)
    std: list[float] = ranged(attrs.NOTHING, 0, 1, open_low=True)


@attrs.frozen
class View:
    """One named view ``[augment.views.NAME]``: its pipeline ``type``; other keys are options
    of that pipeline."""

    type: str
    options: dict[str, Any] = _opts()


MAX_VIEWS = 64
VIEW_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""A view name: a word of letters, digits and ``_`` that does not start with a digit (so it
never reads as a view number)."""


@attrs.frozen
class Augment:
    """The views of each image, counted or named.

    ``views = N``: N views numbered 0..N-1, ``type`` one pipeline for all or a list with one
    per view, the other keys (``options``) options of every pipeline. ``[augment.views.NAME]``
    tables (``View``): 1 to ``MAX_VIEWS`` named views in recipe order, each with its own
    ``type`` and options; the table's own ``type`` and options are then refused
    (``check_across``).

    ``normalize`` (every view and the evaluation transform): a ``NormalizeChoice``, explicit
    ``Stats``, ``true`` (= "dataset") or ``false`` (none); unset, it is "backbone" for a
    pretrained backbone (``pretrained = true`` or ``weights``) and none otherwise
    (``corekit.normalization``)."""

    type: str | list[str] = "simclr"
    views: int | dict[str, View] = ranged(2, 1, MAX_VIEWS)
    size: int | None = ranged(None, 1, 4096)
    normalize: bool | NormalizeChoice | Stats | None = None
    options: dict[str, Any] = _opts()

    def view_names(self) -> list[ViewName]:
        """The views' names in order: 0..N-1 for ``views = N``, else the table names."""
        return list(range(self.views)) if isinstance(self.views, int) else list(self.views)

    def check_across(self, given: set[str], path: str) -> None:
        """Named views: their names (``check_names``), and no ``type`` or option on this
        table (the keys in ``given``), which would apply to none of them."""
        if isinstance(self.views, int):
            return
        self.check_names(path)
        shared = sorted(k for k in given if k == "type" or k in self.options)
        if shared:
            key = shared[0]
            raise RecipeError(
                f"{path}.{key}: augment.views names its views, each with its own type and "
                f"options; move {key!r} into the [augment.views.NAME] tables that use it (a "
                f'stage that inherits it: drop = ["augment.{key}"])')

    def check_names(self, path: str) -> None:
        """1 to ``MAX_VIEWS`` named views, each name a ``VIEW_NAME``."""
        if not 1 <= len(self.views) <= MAX_VIEWS:
            raise RecipeError(f"{path}.views: name 1 to {MAX_VIEWS} views, each a table such "
                              'as [augment.views.weak] type = "weak"')
        for name in self.views:
            if not VIEW_NAME.fullmatch(name):
                raise RecipeError(f"{path}.views.{name}: a view name is a word of letters, "
                                  "digits and _ that does not start with a digit; rename it")


@attrs.frozen
class Clusterer:
    """The E-step: cluster ``features`` (``branch:output``) every ``every`` epochs; with
    ``per_batch`` the clusterer's ``update`` also re-assigns each batch after its step."""

    type: str
    features: str = "online:backbone"
    every: int = ranged(1, 0, BIG)
    before_training: bool = True
    per_batch: bool = False
    normalize: bool = True
    options: dict[str, Any] = _opts()


LabelerWhen = Literal["epochs", "stage_end"]
"""When a dataset-level labeler runs: before training and every ``every`` epochs, or once when
the stage ends."""


@attrs.frozen
class PseudoLabeler:
    """``[pseudo_labeler.NAME]``: a registered labeler.

    A dataset-level labeler (one with ``label(inputs)``) reads whole-set ``inputs``, each a
    part on a branch (``"online:backbone"``) or a state (``"state:bank"``), computed through
    the evaluation transform or the named view ``view``, of all images or of a random
    ``sample`` of them (drawn from the seed and epoch), and writes its rows into the
    ``targets`` state named by ``writes``: before training and every ``every`` epochs
    (0: before training only), or once at the stage's end (``when = "stage_end"``).

    A per-step labeler (``labeler(step) -> (labels, mask)``, e.g. ``confidence_threshold``)
    takes none of these keys: a loss reads it as ``step.targets("NAME")``."""

    type: str
    inputs: dict[str, str] = attrs.field(factory=dict)
    view: int | str | None = ranged(None, 0, MAX_VIEWS - 1)
    sample: int | None = ranged(None, 1, BIG)
    every: int = ranged(1, 0, BIG)
    when: LabelerWhen = "epochs"
    writes: str | None = None
    options: dict[str, Any] = _opts()


@attrs.frozen
class MemoryBank:
    """Short form of ``[state.bank] type = "memory_bank"``: one feature per dataset index,
    refreshed after each optimizer step; other keys are options of the ``memory_bank`` type."""

    source: str = "online:backbone"
    momentum: float = ranged(0.5, 0, 1)
    view: int = ranged(0, 0, 63)
    options: dict[str, Any] = _opts()


NoDecay = Literal["none", "norm", "norm_bias"]
"""Which parameters weight decay skips: none; the weights and biases of normalisation layers
(BatchNorm, LayerNorm, GroupNorm, InstanceNorm); or every 1-d tensor (biases and norm scales)."""


@attrs.frozen
class Optimizer:
    """A registered optimizer (``type``) over the trainable parameters. ``lr_mult`` scales the
    lr of parameters under a prefix (e.g. ``{"heads.pred" = 10}``); ``no_decay`` exempts
    parameters from weight decay (a ``NoDecay``; ``no_decay_norm_bias = true`` is its older
    spelling of ``"norm_bias"``); other keys (``momentum``, ``nesterov``, ``betas``, ...) are
    options of the optimizer type."""

    type: str = "adam"
    lr: float = ranged(3e-4, 0, 10, open_low=True)
    weight_decay: float = ranged(0.0, 0, 1)
    lr_mult: dict[str, float] = ranged(attrs.Factory(dict), 0, BIG, open_low=True)
    no_decay: NoDecay | None = None
    no_decay_norm_bias: bool = False
    options: dict[str, Any] = _opts()

    def decay_exempt(self) -> NoDecay:
        """The ``no_decay`` rule, from either spelling; a ``RecipeError`` when they disagree."""
        if not self.no_decay_norm_bias:
            return self.no_decay or "none"
        if self.no_decay not in (None, "norm_bias"):
            raise RecipeError(f"train.optimizer.no_decay: {self.no_decay!r} disagrees with "
                              "no_decay_norm_bias = true (the same as no_decay = 'norm_bias'); "
                              "keep only no_decay")
        return "norm_bias"


@attrs.frozen
class Schedule:
    """A registered learning-rate schedule (``constant``, ``cosine``, ``multistep``,
    ``fixmatch_cosine``, ...); other keys (``warmup_epochs``, ``cosine_epochs``, ...) are
    options of the schedule type."""

    type: str = "constant"
    options: dict[str, Any] = _opts()


@attrs.frozen
class Sampler:
    """A registered sampler (``shuffle``, ``cluster_balanced``, ...) and its options."""

    type: str = "shuffle"
    options: dict[str, Any] = _opts()


DEVICE = Matches(re.compile(r"auto|cpu|mps|cuda(:\d+)?"), "a device",
                 "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")

FixedPrecision = Literal["fp32", "bf16", "fp16"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]
FixedMemoryFormat = Literal["contiguous", "channels_last"]
MemoryFormat = Literal["contiguous", "channels_last", "auto"]
FrozenBatchNorm = Literal["eval", "train"]
"""The mode of the BatchNorm layers of frozen parts while the network trains."""


MIN_BATCH = 2
"""The fewest images a training step takes: BatchNorm in train mode and the batch losses need
two."""

StreamDraw = Literal["shuffle", "replacement"]
"""How a stream visits its images or rows: a fresh permutation each pass, or uniform draws
with replacement."""


@attrs.frozen
class Stream:
    """``[train.streams.NAME]``: one named part of every step's batch, ``batch_size`` images.

    It walks the training images in the stage sampler's order, or the rows ``(index, label,
    weight)`` of the ``targets`` state named by ``rows``: one fresh permutation of the rows
    after another (``draw = "shuffle"``) or uniform draws with replacement, as many as the
    epoch's steps take (an image with two rows is visited as two pairs). ``views``: the views
    its images get (default every view). ``train.streams = {NAME = 64}`` is the short form of
    a stream of 64 images."""

    batch_size: int = ranged(attrs.NOTHING, MIN_BATCH, BIG)
    rows: str | None = None
    draw: StreamDraw = "shuffle"
    views: list[int | str] | None = ranged(None, 0, 63)


@attrs.frozen
class Train:
    """The M-step loop and its numerics.

    ``precision`` (autocast dtype), ``memory_format`` (of the network and its inputs) and
    ``compile`` (``torch.compile`` of every encoder and head, falling back to eager with a
    message where it fails) are ``"auto"`` unless stated: chosen at stage start by timing a
    few real steps of every candidate (``corekit.engine.numerics``).

    The parts in ``freeze`` are trained by no optimizer and run without gradient, in eval mode;
    ``freeze_bn = "train"`` keeps their BatchNorm layers in train mode while the network trains
    (batch statistics, running statistics updated, parameters unchanged).

    ``streams`` splits each step's batch into named streams (``Stream``), each with its own
    batch size, order and views; a loss reads one as ``step.stream(NAME)``. An epoch is then
    ``steps_per_epoch`` steps, or the batches of the first stream that walks the images.
    ``concat = ["STREAM:VIEW", ...]`` runs the network once over those batches together (one
    set of batch statistics in train-mode BatchNorm).
    """

    epochs: int = ranged(10, 0, 100_000)
    batch_size: int = ranged(256, MIN_BATCH, BIG)
    drop_last: bool = True
    steps_per_epoch: int | None = ranged(None, 1, BIG)
    optimizer: Optimizer = attrs.field(factory=Optimizer)
    schedule: Schedule = attrs.field(factory=Schedule)
    precision: Precision = "auto"
    memory_format: MemoryFormat = "auto"
    compile: bool | Literal["auto"] = "auto"
    grad_clip: float | None = ranged(None, 0, BIG, open_low=True)
    seed: int = ranged(0, 0, 2**32 - 1)  # numpy's seeds
    device: str = checked("auto", DEVICE)
    freeze: list[str] = attrs.field(factory=list)
    freeze_bn: FrozenBatchNorm = "eval"
    sync_bn: bool = False  # torchrun on CUDA: SyncBatchNorm (corekit.distributed.sync_batch_norm)
    sampler: Sampler = attrs.field(factory=Sampler)
    eval_every: int = ranged(1, 0, BIG)
    checkpoint_every: int = ranged(1, 0, BIG)
    time_phases: bool = False  # seconds per loop phase into metrics.jsonl (syncs CUDA)
    # wall-clock cap: "10m", "1h30m", "90s" or seconds (corekit.recipe.durations)
    budget: str | float | None = ranged(None, 0, BIG, open_low=True)
    streams: dict[str, int | Stream] = ranged(attrs.Factory(dict), MIN_BATCH, BIG)
    concat: list[str] = attrs.field(factory=list)

    def stream_specs(self) -> dict[str, Stream]:
        """The named streams, the short form ``{NAME = B}`` as ``Stream(B)``; empty when the
        steps have one stream (``train.batch_size`` images of the sampler's order)."""
        return {name: spec if isinstance(spec, Stream) else Stream(batch_size=spec)
                for name, spec in self.streams.items()}


NmiAverage = Literal["arithmetic", "geometric"]
"""How NMI normalises the mutual information: by the arithmetic or the geometric mean of the
two label entropies."""


@attrs.frozen
class Eval:
    """How clusters are read off: ``"clusterer"`` (E-step on ``features``) or
    ``"head:[BRANCH:]NAME"`` (argmax of a head's output; e.g. ``"head:target:cluster"`` reads
    the EMA target's copy); ``nmi_average``: the ``NmiAverage`` of the reported NMI."""

    assign: str = "clusterer"
    features: str | None = None
    batch_size: int = ranged(512, 1, BIG)
    nmi_average: NmiAverage = "arithmetic"


@attrs.frozen
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
    pseudo_labeler: dict[str, PseudoLabeler] = attrs.field(factory=dict)
    clusterer: Clusterer | None = None
    memory_bank: MemoryBank | None = None
    train: Train = attrs.field(factory=Train)
    eval: Eval = attrs.field(factory=Eval)


@attrs.frozen
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


COMPONENT_CLASSES = (Component, Head, Loss, State, PseudoLabeler, Clusterer, Schedule, Sampler)
"""The tables a bare string stands for: ``sampler = "shuffle"`` is ``{type = "shuffle"}``."""
