"""The composer: a validated recipe stage -> the networks, views, losses and E-step to train.

Everything is checked before training starts: unknown components and options, heads reading
parts that do not exist, and every ``Need`` a loss declares (e.g. a target branch, an E-step's
pseudo-labels, a second view). Errors name the recipe key and say what to add.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import nn

from corekit import recipe as rc
from corekit.components.augment import eval_transform
from corekit.data import ImageSet
from corekit.errors import ComponentError, RecipeError, did_you_mean
from corekit.network import Network
from corekit.plugins import Plugins
from corekit.registry import Entry
from corekit.state import EMATarget, MemoryBank, PseudoLabels
from corekit.step import Model, Need

CONTEXT_ARGS = ("in_channels", "in_dim", "image_size", "n_clusters", "size", "channels",
                "mean", "std")


@attrs.define
class WeightedLoss:
    """A loss term of the total: ``weight · fn(step)`` from epoch ``start_epoch`` on."""

    name: str
    label: str
    fn: Callable[..., torch.Tensor]
    weight: float
    start_epoch: int

    def active(self, epoch: int) -> bool:
        return epoch >= self.start_epoch and self.weight != 0


@attrs.define
class Composed:
    """What the engine runs for one stage."""

    stage: rc.Stage
    train_set: ImageSet
    eval_set: ImageSet
    reference: ImageSet | None
    n_clusters: int
    model: Model
    views: list[nn.Module]
    eval_transform: nn.Module
    losses: list[WeightedLoss]
    clusterer: Any | None
    pseudo: PseudoLabels | None
    bank: MemoryBank | None
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]


def _signature(entry: Entry) -> inspect.Signature:
    obj = entry.obj
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return inspect.Signature()


def _hints(obj: Any) -> dict[str, Any]:
    try:
        target = obj.__init__ if inspect.isclass(obj) else obj
        return typing.get_type_hints(target)
    except Exception:
        return {}


def _check_type(value: Any, hint: Any) -> bool:
    basic = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}
    hint, _ = rc._unwrap_optional(hint)
    if hint in basic:
        if isinstance(value, bool) and hint is not bool:
            return False
        return isinstance(value, basic[hint])
    return True


def build_component(plugins: Plugins, kind: str, spec_type: str, options: dict[str, Any],
                    path: str, **context: Any) -> Any:
    """Look up ``spec_type`` and call its factory with the recipe ``options`` plus whichever
    ``context`` values (``in_channels``, ``n_clusters``, ...) its signature accepts."""
    try:
        entry = plugins.registry.get(kind, spec_type)
    except ComponentError as exc:
        raise ComponentError(f"{path}.type: {exc}{plugins.failure_note()}") from None
    params = _signature(entry).parameters
    if entry.is_prefix:
        params = dict(list(params.items())[1:])
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    hints = _hints(entry.obj)
    for key, value in options.items():
        if key not in params and not accepts_any:
            valid = [k for k in params if k not in CONTEXT_ARGS]
            raise RecipeError(
                f"{path}.{key}: unknown option of {kind} {spec_type!r} ({entry.qualified}); "
                f"{did_you_mean(key, valid)}"
            )
        if key in hints and not _check_type(value, hints[key]):
            raise RecipeError(f"{path}.{key}: expected {hints[key]}, got {value!r}")
    kwargs = {k: v for k, v in context.items() if k in params and k not in options}
    try:
        return plugins.registry.build(kind, spec_type, **kwargs, **options)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{path}: cannot build {kind} {spec_type!r}: {exc}") from exc


def _head_order(heads: dict[str, rc.Head], encoders: set[str]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in encoders:
            return
        if name in visiting:
            raise RecipeError(f"model.heads.{name}.input: heads read each other in a cycle")
        visiting.add(name)
        source = heads[name].input
        if source not in heads and source not in encoders:
            raise RecipeError(
                f"model.heads.{name}.input: {source!r} is neither an encoder nor a head; "
                f"{did_you_mean(source, [*encoders, *heads])}"
            )
        visit(source)
        visiting.discard(name)
        order.append(name)

    for name in heads:
        visit(name)
    return order


def build_network(plugins: Plugins, stage: rc.Stage, data: ImageSet, n_clusters: int) -> Network:
    """Encoders and heads of ``stage``, with its frozen parts switched off."""
    size = stage.augment.size or _side(data)
    context = {"in_channels": data.channels, "image_size": size, "n_clusters": n_clusters}
    specs = {"backbone": stage.model.backbone, **stage.model.encoders}
    encoders = {
        name: build_component(plugins, "backbone", spec.type, spec.options,
                              "model.backbone" if name == "backbone" else f"model.encoders.{name}",
                              **context)
        for name, spec in specs.items()
    }
    heads: dict[str, nn.Module] = {}
    dims = {name: int(module.out_dim) for name, module in encoders.items()}
    for name in _head_order(stage.model.heads, set(encoders)):
        spec = stage.model.heads[name]
        heads[name] = build_component(plugins, "head", spec.type, spec.options,
                                      f"model.heads.{name}", in_dim=dims[spec.input], **context)
        dims[name] = int(heads[name].out_dim)
    parts = [*encoders, *heads]
    for name in stage.train.freeze:
        if name not in parts:
            raise RecipeError(f"train.freeze: {name!r} is not a part; {did_you_mean(name, parts)}")
    inputs = {name: spec.input for name, spec in stage.model.heads.items()}
    return Network(encoders, heads, inputs, frozenset(stage.train.freeze))


def _side(data: ImageSet) -> int:
    size = data.size
    return size if isinstance(size, int) else max(size)


def carry_weights(new: Network, old: Network, stage: str) -> None:
    """Give ``new`` the weights of every part of ``old`` with the same name."""
    for name in new.names():
        if name not in old.names():
            continue
        source, dest = old.part(name).state_dict(), new.part(name).state_dict()
        bad = [k for k in dest if k not in source or source[k].shape != dest[k].shape]
        if bad:
            raise RecipeError(
                f"stage {stage!r}: part {name!r} differs from the previous stage's ({bad[0]}); "
                "set `fresh = true` in the stage to start from new weights"
            )
        new.part(name).load_state_dict(source)


def parse_feature(spec: str, path: str) -> tuple[str, str]:
    """``"target:proj"`` -> ("target", "proj"); a bare name means the online branch."""
    branch, name = spec.split(":", 1) if ":" in spec else ("online", spec)
    if branch not in ("online", "target"):
        raise RecipeError(f"{path}: branch {branch!r} must be 'online' or 'target'")
    return branch, name


def check_need(need: Need, who: str, stage: rc.Stage, network: Network,
               target: EMATarget | None) -> None:
    """Raise a RecipeError saying what to add when the recipe does not provide ``need``."""
    if need.kind == "output":
        if need.name not in network.names():
            raise RecipeError(
                f"{who} reads {need.describe()}, but the model has no part {need.name!r}: add "
                f"[model.heads.{need.name}] or pass the head name the recipe uses; "
                f"{did_you_mean(need.name, network.names())}"
            )
        if need.branch == "target":
            if target is None:
                parts = network.dependencies(need.name)
                raise RecipeError(
                    f"{who} needs a target branch: add [model.target] with parts = {parts}"
                )
            if need.name not in target.network.names():
                raise RecipeError(
                    f"{who} reads target:{need.name}: add {need.name!r} to model.target.parts"
                )
    elif need.kind == "views" and stage.augment.views < need.count:
        raise RecipeError(f"{who} needs {need.count} views: set augment.views = {need.count}")
    elif need.kind == "labels" and stage.clusterer is None:
        raise RecipeError(f"{who} reads pseudo-labels: add a [clusterer] section (the E-step)")
    elif need.kind == "bank" and stage.memory_bank is None:
        raise RecipeError(f"{who} reads a memory bank: add a [memory_bank] section")
    elif need.kind == "reference" and stage.data.reference is None:
        raise RecipeError(f"{who} reads the reference set: set data.reference")


def build_optimizer(train: rc.Train, network: Network) -> tuple[torch.optim.Optimizer, list[float]]:
    """SGD/Adam/AdamW over trainable parameters, one group per ``lr_mult`` prefix."""
    opt = train.optimizer
    groups: dict[float, list[nn.Parameter]] = {}
    for prefix in opt.lr_mult:
        if not any(n.startswith(prefix) for n, _ in network.named_parameters()):
            raise RecipeError(f"train.optimizer.lr_mult.{prefix}: no parameter starts with it "
                              "(names look like 'heads.pred.0.weight')")
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        mult = next((m for p, m in opt.lr_mult.items() if name.startswith(p)), 1.0)
        groups.setdefault(mult, []).append(param)
    if not groups:
        raise RecipeError("train.freeze leaves no trainable parameter")
    param_groups = [{"params": ps, "lr": opt.lr * m} for m, ps in groups.items()]
    kind = opt.type.lower()
    if kind == "sgd":
        optimizer = torch.optim.SGD(param_groups, lr=opt.lr, momentum=opt.momentum,
                                    weight_decay=opt.weight_decay)
    elif kind in ("adam", "adamw"):
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        optimizer = cls(param_groups, lr=opt.lr, betas=tuple(opt.betas),
                        weight_decay=opt.weight_decay)
    else:
        raise RecipeError(f"train.optimizer.type: unknown optimizer {opt.type!r}; "
                          f"{did_you_mean(opt.type, ['sgd', 'adam', 'adamw'])}")
    return optimizer, [g["lr"] for g in param_groups]


def compose(plugins: Plugins, stage: rc.Stage, datasets: Callable[[str], ImageSet],
            device: torch.device, previous: Network | None = None,
            steps_per_epoch: int = 1) -> Composed:
    """Build and check everything ``stage`` needs, on ``device``."""
    main = datasets(stage.data.name)
    reference = datasets(stage.data.reference) if stage.data.reference else None
    if stage.data.source not in ("main", "reference"):
        raise RecipeError("data.source: must be 'main' or 'reference'")
    if stage.data.source == "reference" and reference is None:
        raise RecipeError("data.source = 'reference' needs data.reference = '<dataset>'")
    train_set = reference if stage.data.source == "reference" else main
    n_clusters = stage.data.n_clusters or train_set.num_classes
    if not n_clusters:
        raise RecipeError(f"data.n_clusters: {train_set.name} has no class count; set it")

    network = build_network(plugins, stage, train_set, n_clusters)
    if previous is not None and not stage.fresh:
        carry_weights(network, previous, stage.name)
    network.to(device)
    if stage.train.channels_last:
        network.to(memory_format=torch.channels_last)

    target = None
    if stage.model.target is not None:
        for part in stage.model.target.parts:
            if part not in network.names():
                raise RecipeError(f"model.target.parts: {part!r} is not a part; "
                                  f"{did_you_mean(part, network.names())}")
        total = stage.train.epochs * steps_per_epoch
        target = EMATarget(network, stage.model.target.parts, stage.model.target.momentum,
                           stage.model.target.schedule, total).to(device)
    model = Model(online=network, target=target)

    aug = stage.augment
    types = aug.type if isinstance(aug.type, list) else [aug.type] * aug.views
    if len(types) != aug.views:
        raise RecipeError(f"augment.type: {len(types)} pipelines for {aug.views} views")
    size = aug.size or _side(train_set)
    mean, std = (train_set.mean, train_set.std) if aug.normalize else (None, None)
    context = {"size": size, "channels": train_set.channels, "mean": mean, "std": std}
    views = [build_component(plugins, "augmentation", t, aug.options, "augment", **context)
             .to(device) for t in types]
    evaluate = eval_transform(size, train_set.channels, mean, std).to(device)

    losses = []
    for name, spec in stage.losses.items():
        fn = build_component(plugins, "loss", spec.type, spec.options, f"losses.{name}",
                             n_clusters=n_clusters)
        if isinstance(fn, nn.Module):
            fn.to(device)
        who = f"loss {name!r} ({plugins.registry.get('loss', spec.type).qualified})"
        for need in fn.needs():
            check_need(need, who, stage, network, target)
        losses.append(WeightedLoss(name, spec.type, fn, spec.weight, spec.start_epoch))
    if not losses:
        raise RecipeError("losses: the recipe has no loss; add a [losses.<name>] table")

    clusterer = pseudo = None
    if stage.clusterer is not None:
        spec = stage.clusterer
        clusterer = build_component(plugins, "clusterer", spec.type, spec.options, "clusterer",
                                    n_clusters=n_clusters)
        branch, part = parse_feature(spec.features, "clusterer.features")
        check_need(Need.output(part, branch), "clusterer.features", stage, network, target)
        pseudo = PseudoLabels(len(train_set), n_clusters).to(device)
        if spec.per_batch and not callable(getattr(clusterer, "update", None)):
            raise RecipeError(f"clusterer.per_batch: {spec.type!r} has no update(features) "
                              "method; use a per-batch clusterer or set per_batch = false")

    bank = None
    if stage.memory_bank is not None:
        mb = stage.memory_bank
        branch, part = parse_feature(mb.source, "memory_bank.source")
        check_need(Need.output(part, branch), "memory_bank.source", stage, network, target)
        gen = torch.Generator().manual_seed(stage.train.seed)
        bank = MemoryBank(len(train_set), network.out_dim(part), mb.source, mb.momentum, mb.view,
                          gen).to(device)

    assign = stage.eval.assign
    if assign == "clusterer":
        if clusterer is None:
            raise RecipeError("eval.assign = 'clusterer' needs a [clusterer] section; "
                              "or set eval.assign = 'head:<cluster head name>'")
    elif assign.startswith("head:"):
        check_need(Need.output(assign[5:]), "eval.assign", stage, network, target)
    else:
        raise RecipeError(f"eval.assign: {assign!r} must be 'clusterer' or 'head:<name>'")
    if stage.eval.features:
        branch, part = parse_feature(stage.eval.features, "eval.features")
        check_need(Need.output(part, branch), "eval.features", stage, network, target)

    if stage.train.sampler not in ("shuffle", "cluster_balanced"):
        raise RecipeError(f"train.sampler: {stage.train.sampler!r} must be 'shuffle' or "
                          "'cluster_balanced'")
    if stage.train.sampler == "cluster_balanced" and clusterer is None:
        raise RecipeError("train.sampler = 'cluster_balanced' weights images by their E-step "
                          "cluster: add a [clusterer] section")
    optimizer, base_lrs = build_optimizer(stage.train, network)
    return Composed(stage, train_set, main, reference, n_clusters, model, views, evaluate,
                    losses, clusterer, pseudo, bank, optimizer, base_lrs)
