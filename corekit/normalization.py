"""Whose mean and std normalise a stage's images (``augment.normalize``): the training set's,
ImageNet's, the backbone's pretrained weights' (``input_mean``/``input_std`` of the
``torchvision:`` and ``timm:`` families) or explicit values; unset, the backbone's own for a
pretrained backbone and none otherwise."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from corekit import recipe as rc
from corekit.data import ImageSet
from corekit.data.sources import IMAGENET_MEAN, IMAGENET_STD
from corekit.errors import RecipeError
from corekit.recipe.schema import Stats

Pair = tuple[tuple[float, ...], tuple[float, ...]]


def is_pretrained(spec: rc.Component) -> bool:
    """The backbone starts from trained weights: ``pretrained = true`` or a ``weights`` file."""
    return bool(spec.weights) or spec.options.get("pretrained") is True


def choice(stage: rc.Stage, backbone: nn.Module) -> bool | str | Stats:
    """``augment.normalize`` with its default filled in: "backbone" for a pretrained backbone
    that knows its weights' normalisation, none otherwise."""
    value = stage.augment.normalize
    if value is None:
        known = hasattr(backbone, "input_mean") and is_pretrained(stage.model.backbone)
        return "backbone" if known else False
    return "dataset" if value is True else value


def fit_channels(values: Sequence[float], channels: int, what: str) -> tuple[float, ...]:
    """``values`` for ``channels`` channels: RGB values averaged for grey images, one value
    repeated for every channel."""
    if len(values) == channels:
        return tuple(values)
    if len(values) == 1:
        return tuple(values) * channels
    if len(values) == 3 and channels == 1:
        return (sum(values) / 3,)
    raise RecipeError(f"augment.normalize: {len(values)} {what} values for {channels}-channel "
                      f"images; give {channels} (or one)")


def input_stats(stage: rc.Stage, data: ImageSet, backbone: nn.Module) -> Pair | None:
    """The (mean, std) that normalise ``data``'s images for ``stage``, one per channel, or None
    for no normalisation."""
    picked = choice(stage, backbone)
    if picked is False:
        return None
    if picked == "dataset":
        return tuple(data.mean), tuple(data.std)
    if picked == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif picked == "backbone":
        if not hasattr(backbone, "input_mean"):
            raise RecipeError(
                f"augment.normalize = 'backbone': {stage.model.backbone.type!r} has no "
                "pretrained normalisation (only the torchvision: and timm: families do); set "
                "augment.normalize to 'dataset', 'imagenet' or {mean = [...], std = [...]}")
        mean, std = backbone.input_mean, backbone.input_std
    else:
        assert isinstance(picked, Stats)
        mean, std = picked.mean, picked.std
    return fit_channels(mean, data.channels, "mean"), fit_channels(std, data.channels, "std")
