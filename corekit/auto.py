"""The ``auto`` preset: settings that fit data no preset was written for.

When ``--data`` names a set for which the recipe has no preset (your own image folder), and it
is not the set the recipe's top level is written for, the recipe resolves an ``auto`` preset
from what the images and the device are. One line says what was chosen; the run directory keeps
it in ``auto_preset.json``; ``deepclust show RECIPE --data imagefolder:PATH`` shows it.

Rules (CPU / CUDA):
- image size: the images' own side, at most 32 px on a CPU and 96 px on a GPU;
- backbone: ``small_cnn`` on a CPU, ``resnet18_cifar`` (≤ 64 px) or ``resnet18`` on a GPU;
  head widths above 512 are cut to 512 on a CPU;
- views: the recipe's pipeline with generic natural-image settings (flip on, no rotation or
  slant, crops of 30-100 %);
- batch: 128 (CPU) or 256 (GPU), never more than the set, ``drop_last`` only while it drops
  under 10 % of the images; an SGD or LARS learning rate scales linearly with the batch;
- time: ``train.budget`` is 5 minutes on a CPU unless given; with a budget the epochs are set
  to 1000 and the budget's probe decides how many of them fit (``corekit.budget``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from corekit import recipe as rc

if TYPE_CHECKING:  # `deepclust show` of a recipe with a preset for its data imports no torch
    import torch

CPU_SIZE, GPU_SIZE = 32, 96
CPU_BATCH, GPU_BATCH = 128, 256
CPU_HEAD_WIDTH = 512
CPU_BUDGET = "5m"
BUDGETED_EPOCHS = 1000
MAX_DROPPED = 0.1
LINEAR_LR = ("sgd", "lars")


def applies(raw: rc.Raw, data: str | None) -> bool:
    """No preset for ``data``'s key and not the data set the recipe's top level is for."""
    if data is None:
        return False
    key = rc.dataset_key(data)
    own = rc.dataset_key(str(raw.get("data", {}).get("name", rc.Data().name)))
    return key not in raw.get("presets", {}) and key != own


def _side(data: Any) -> int:
    size = data.size
    return size if isinstance(size, int) else max(size)


def auto_preset(raw: rc.Raw, data: Any, device: torch.device) -> tuple[rc.Raw, str]:
    """The overrides for ``data`` (an ImageSet) on ``device``, and the line that says so."""
    gpu = device.type == "cuda"
    side, n = _side(data), len(data)
    size = min(side, GPU_SIZE if gpu else CPU_SIZE)
    backbone: dict[str, Any] = ({"type": "resnet18_cifar" if size <= 64 else "resnet18"} if gpu
                                else {"type": "small_cnn", "width": 32, "out_dim": 128})
    batch = min(GPU_BATCH if gpu else CPU_BATCH, n)
    drop_last = (n % batch) / n < MAX_DROPPED
    train: dict[str, Any] = {"batch_size": batch, "drop_last": drop_last}
    optimizer = raw.get("train", {}).get("optimizer", {})
    old_batch = raw.get("train", {}).get("batch_size", 256)
    if str(optimizer.get("type", "adam")).lower() in LINEAR_LR and "lr" in optimizer:
        train["optimizer"] = {"lr": optimizer["lr"] * batch / old_batch}
    if not gpu and "budget" not in raw.get("train", {}):
        train["budget"] = CPU_BUDGET
    if "budget" in train or "budget" in raw.get("train", {}):
        train["epochs"] = BUDGETED_EPOCHS  # the budget decides how many of them run
    heads = {}
    if not gpu:
        for name, head in raw.get("model", {}).get("heads", {}).items():
            if isinstance(head, dict) and head.get("hidden", 0) > CPU_HEAD_WIDTH:
                heads[name] = {"hidden": CPU_HEAD_WIDTH}
    augment = {"size": size, "normalize": True, "flip_p": 0.5, "rotate": 0.0, "shear": 0.0,
               "crop_scale": [0.3, 1.0]}
    if raw.get("augment", {}).get("type", "simclr") not in ("simclr", "byol", "moco_v2"):
        augment = {"size": size, "normalize": True}
    preset: rc.Raw = {"model": {"backbone": backbone, **({"heads": heads} if heads else {})},
                      "augment": augment, "train": train}
    line = (f"auto preset for {data.name} ({n} images, {side} px, {data.channels} channel(s)) "
            f"on {'a GPU' if gpu else 'the CPU'}: {backbone['type']} at {size} px, batch "
            f"{batch}{' (drop_last)' if drop_last else ''}"
            + (f", budget {train['budget']}" if "budget" in train else "")
            + (f", heads {', '.join(heads)} at width {CPU_HEAD_WIDTH}" if heads else ""))
    return preset, line


def with_auto_preset(raw: rc.Raw, data: Any, device: torch.device) -> rc.Raw:
    """``raw`` with the auto preset merged (the backbone table replaced whole) and recorded
    under the recipe's ``auto`` key (``line``: what was chosen, ``preset``: the overrides)."""
    preset, line = auto_preset(raw, data, device)
    out = copy.deepcopy(raw)
    out.setdefault("model", {})["backbone"] = preset["model"]["backbone"]
    rest = {k: v for k, v in preset.items() if k != "model"}
    rest["model"] = {k: v for k, v in preset["model"].items() if k != "backbone"}
    merged = rc.merge(out, rest)
    merged["auto"] = {"line": line, "preset": preset}
    merged["preset"] = "auto"
    return merged
