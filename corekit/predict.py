"""A trained run, reloaded to assign new images (``deepclust predict``) or written out as
safetensors (``deepclust export``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from corekit import recipe as rc
from corekit.assign import head_assignment, nearest_centroid
from corekit.builder import build_component
from corekit.components.augment import eval_transform
from corekit.composer import build_network, state_specs
from corekit.data import DataError, ImageSet
from corekit.engine.trainer import network_differences
from corekit.errors import TrainingError
from corekit.feature_cache import through_cache
from corekit.handoff import OUTPUTS_FILE, StageOutputs
from corekit.network import Network
from corekit.normalization import input_stats
from corekit.parts import parse_assign, parse_feature
from corekit.plugins import Plugins
from corekit.run_files import load_run_recipe


@attrs.define
class TrainedModel:
    """What assigns an image as the run did: the network of ``branch``, its part ``part``, the
    run's evaluation transform, and the run's centroids (None when a head's argmax assigns)."""

    stage: rc.Stage
    network: Network
    branch: str
    part: str
    transform: nn.Module
    centroids: torch.Tensor | None
    normalize: bool
    channels: int
    data: dict[str, Any]
    outputs: StageOutputs


def last_finished_stage(run_dir: Path, recipe: rc.Recipe) -> rc.Stage:
    """The last stage of ``run_dir`` that saved its outputs."""
    for stage in reversed(recipe.stages):
        if (run_dir / "stages" / stage.name / OUTPUTS_FILE).exists():
            return stage
    raise TrainingError(f"{run_dir} holds no finished stage (no stages/*/{OUTPUTS_FILE}); "
                        "train the run first")


def _shape_only(data: dict[str, Any]) -> ImageSet:
    """A one-image set with the training images' channels, size and statistics."""
    size = int(data["size"])
    images = torch.zeros(1, int(data["channels"]), size, size, dtype=torch.uint8)
    return ImageSet(str(data["name"]), images, None, int(data["n_clusters"]), data["mean"],
                    data["std"])


def _another_network(run_dir: Path, stage: rc.Stage, differ: str) -> TrainingError:
    """What ``--resume`` says of a checkpoint of another network, for a run whose recipe.toml
    no longer fits the outputs its stage ``stage`` saved."""
    saved = run_dir / "stages" / stage.name / OUTPUTS_FILE
    return TrainingError(f"{saved} was trained with another network than "
                         f"{run_dir / 'recipe.toml'} describes: {differ}. Put back the run's "
                         "recipe.toml as training wrote it, or train again into a new --out")


def _load_parts(network: Network, outputs: StageOutputs, run_dir: Path,
                stage: rc.Stage) -> None:
    """The saved weights of ``outputs`` into the parts of ``network``; parts that do not fit
    them (missing, unexpected, of another shape) are named in a TrainingError."""
    saved = {f"{'encoders' if name in network.encoders else 'heads'}.{name}.{key}": value
             for name, tensors in outputs.parts.items() for key, value in tensors.items()}
    differ = network_differences(network, saved)
    if differ:
        raise _another_network(run_dir, stage, "; ".join(differ))
    for name in network.owned():
        network.part(name).load_state_dict(outputs.parts[name])


def load_trained(run_dir: Path, plugins: Plugins) -> TrainedModel:
    """The last finished stage of ``run_dir`` with its saved weights, on the CPU."""
    if not (run_dir / "recipe.toml").exists():
        raise TrainingError(f"{run_dir} is not a run directory (no recipe.toml)")
    recipe = load_run_recipe(run_dir)
    stage = last_finished_stage(run_dir, recipe)
    outputs = StageOutputs.load(run_dir / "stages" / stage.name)
    data = outputs.data
    shape = _shape_only(data)
    network = build_network(plugins, stage, shape, int(data["n_clusters"]))
    _load_parts(network, outputs, run_dir, stage)
    stats = input_stats(stage, shape, network.part("backbone"))
    assigned = parse_assign(stage.eval.assign)
    centroids = None
    if assigned is None:
        spec = stage.eval.features or stage.clusterer.features
        branch, part = parse_feature(spec, "eval.features")
        if "centroids" not in outputs.state.get("pseudo", {}):
            raise _another_network(run_dir, stage, "it saved no centroids to assign with")
        centroids = outputs.state["pseudo"]["centroids"]
    else:
        branch, part = assigned
    if branch != "online":
        path, spec = state_specs(stage)[branch]
        state = build_component(plugins, "state", spec.type, spec.options, path,
                                network=network, n_images=1, n_clusters=int(data["n_clusters"]),
                                total_steps=1, steps_per_epoch=1)
        try:
            state.load_state_dict(outputs.state[branch])
        except (KeyError, RuntimeError) as exc:
            raise _another_network(run_dir, stage, f"its state {branch!r} does not fit: "
                                   f"{str(exc).splitlines()[0]}") from None
        network = state.network
    transform = eval_transform(int(data["size"]), int(data["channels"]),
                               stats[0] if stats else None, stats[1] if stats else None)
    network.eval()
    return TrainedModel(stage, network, branch, part, transform, centroids,
                        stage.clusterer.normalize if stage.clusterer else False,
                        int(data["channels"]), data, outputs)


@torch.no_grad()
def assigning_features(model: TrainedModel, data: ImageSet, batch_size: int = 512) -> torch.Tensor:
    """The (N, D) outputs of ``model.part`` for every image of ``data``, prepared as in
    training. The part's frozen way in (every part after a stage of zero epochs) comes from the
    feature cache, so images the run trained on are not run through a frozen backbone again."""
    def extract(part: str, known: dict[str, torch.Tensor]) -> torch.Tensor:
        out = []
        for indices, images in data.batches(torch.arange(len(data)), batch_size):
            given = {name: value[indices.cpu()] for name, value in known.items()}
            x = images.cpu() if known else model.transform(images.cpu())
            out.append(model.network.compute(part, x, given).float())
        return torch.cat(out)

    return through_cache(model.network, model.part, data, model.transform, precision=None,
                         trained=model.stage.train.epochs > 0, device=torch.device("cpu"),
                         extract=extract)


@torch.no_grad()
def predict(model: TrainedModel, data: ImageSet,
            batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster (N,) and confidence (N,) of every image of ``data``, prepared as in training."""
    if data.channels != model.channels:
        raise DataError(f"the run was trained on {model.channels}-channel images; "
                        f"{data.name} has {data.channels} channel(s)")
    features = assigning_features(model, data, batch_size)
    if model.centroids is None:
        return head_assignment(features, model.network.produces(model.part))
    if model.normalize:
        features = nn.functional.normalize(features, dim=1)
    return nearest_centroid(features, model.centroids)


EXPORT_FILES = ("model.safetensors", "recipe.toml", "export.json")


def export(model: TrainedModel, run_dir: Path, out: Path) -> list[Path]:
    """``out/model.safetensors`` (every part of the assigning network, and the centroids),
    ``out/recipe.toml`` and ``out/export.json`` (how images are prepared and assigned); the
    paths written, in the order of ``EXPORT_FILES``."""
    from safetensors.torch import save_file

    weights, recipe, meta_file = (out / name for name in EXPORT_FILES)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{key}": value.contiguous()
               for name in model.network.owned()
               for key, value in model.network.part(name).state_dict().items()}
    if model.centroids is not None:
        tensors["centroids"] = model.centroids.contiguous()
    save_file(tensors, str(weights))
    shutil.copyfile(run_dir / "recipe.toml", recipe)
    meta = {"stage": model.stage.name, "branch": model.branch, "assign_part": model.part,
            "normalize_features": model.normalize, "data": model.data,
            "assign": "centroids" if model.centroids is not None else "head argmax"}
    meta_file.write_text(json.dumps(meta, indent=2))
    return [weights, recipe, meta_file]
