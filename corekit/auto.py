"""The ``auto`` recipe and the ``auto`` preset: what to run, and settings that fit data no
preset was written for.

``deepclust train auto`` runs the recipe that suits this machine (``choose``): when a torchvision
backbone's ImageNet weights are in torch hub's checkpoint folder, ``PRETRAINED_RECIPE`` on that
backbone with its weights (pretrained features); otherwise ``SCRATCH_RECIPE``, trained from
scratch, and the line says where to put a weights file. The choice is recorded under the
recipe's ``auto`` key (``recipe``) and starts its line; the user's ``--set`` applies on top.

When ``--data`` names a set for which the recipe has no preset (your own image folder), and it
is not the set the recipe's top level is written for, the recipe resolves an ``auto`` preset
from what the images and the device are. One line says what was chosen; the run directory keeps
it in ``auto_preset.json``; ``deepclust show RECIPE --data imagefolder:PATH`` shows it.

Rules (CPU / CUDA):
- a pretrained backbone (``pretrained = true`` or ``weights``, the recipe's or ``--set``'s) is
  kept, at ``PRETRAINED_SIZE`` px whatever the images' side (ImageNet features of small images
  need them enlarged; the size is measured, see the constant), with the weights' own
  normalisation; a recipe of 0 epochs (``features-kmeans``) keeps 0 epochs and gets no budget,
  and one that trains only heads on it (a frozen backbone: ``features-selflabel``) gets the
  epochs of ``HEAD_STEPS`` steps and no budget (the heads train on cached features);
- otherwise image size: the images' own side, at most 32 px on a CPU and 96 px on a GPU;
- backbone: ``small_cnn`` on a CPU, ``resnet18_cifar`` (≤ 64 px) or ``resnet18`` on a GPU,
  and the line says that pretrained features usually do better on small sets;
  head widths above 512 are cut to 512 on a CPU;
- views: the recipe's pipeline with generic natural-image settings (flip on, no rotation or
  slant, crops of 30-100 %);
- batch: 128 (CPU) or 256 (GPU), never more than the set, ``drop_last`` only while it drops
  under 10 % of the images; an SGD or LARS learning rate scales linearly with the batch;
- time: ``train.budget`` is 5 minutes on a CPU unless given; with a budget the epochs are set
  to 1000 and the budget's probe decides how many of them fit (``corekit.budget``).

What ``--set`` gives (``selected[AUTO][USER_SET]``, ``corekit.recipe.resolving``) wins over the
preset, and the line says the values that will run.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from corekit import recipe as rc
from corekit.recipe.resolving import AUTO, USER_SET

if TYPE_CHECKING:  # `deepclust show` of a recipe with a preset for its data imports no torch
    import torch

CPU_SIZE, GPU_SIZE = 32, 96
PRETRAINED_SIZE = 96
"""Input side for a pretrained backbone: k-means on torchvision MobileNetV2 features of three
folders gave the same mean NMI at 96 and 128 px (above 64 px) and 96 px takes 42 % of 128 px's
CPU time (docs/benchmarks.md, "Pretrained input size")."""
HEAD_STEPS = 512
"""Steps of a heads-only recipe on a frozen pretrained backbone, whatever the set's size: a
cluster head on cached MobileNetV2 features of two image folders reached its NMI by 500 steps
of batch 128 (docs/benchmarks.md, "A head on pretrained features")."""
CPU_BATCH, GPU_BATCH = 128, 256
CPU_HEAD_WIDTH = 512
CPU_BUDGET = "5m"
BUDGETED_EPOCHS = 1000
MAX_DROPPED = 0.1
LINEAR_LR = ("sgd", "lars")

RECIPE = "auto"
"""The recipe name that runs ``choose``'s pick. It is the core's: a plugin's recipe of the same
name runs under its qualified name (``PLUGIN.auto``), and the choice's line says so."""
PRETRAINED_RECIPE = "features-selflabel"
"""What ``auto`` runs when pretrained weights are on the machine (the one place naming it)."""
SCRATCH_RECIPE = "simclr-kmeans"
"""What ``auto`` runs otherwise: the from-scratch default."""
CHOICE = "recipe"
"""The key of the recipe's ``auto`` table that records what the ``auto`` recipe chose."""
GUIDE = 'docs/user-guide.md, "Pretrained features, offline"'


@attrs.frozen
class Choice:
    """What the ``auto`` recipe runs: ``recipe`` with ``sets`` (``--set`` options, applied
    before the user's as a command of their own), and ``why``."""

    recipe: str
    sets: tuple[str, ...]
    why: str

    @property
    def line(self) -> str:
        return f"auto recipe: {self.recipe} ({self.why})"

    def record(self) -> rc.Raw:
        """The table kept under ``raw[AUTO][CHOICE]`` (``auto_preset.json``, recipe.toml)."""
        return {"chose": self.recipe, "set": list(self.sets), "why": self.why}


def choose(shadowed: str | None = None) -> Choice:
    """The recipe ``auto`` runs here: ``PRETRAINED_RECIPE`` on the first torchvision backbone
    whose ImageNet weights are in torch hub's checkpoint folder, else ``SCRATCH_RECIPE``.
    ``shadowed``: the qualified name of a plugin's recipe also called ``auto``."""
    from corekit.components.pretrained import hub_checkpoints, torchvision_on_machine

    found = torchvision_on_machine()
    other = (f"; plugin recipe {shadowed} is another recipe: run it by that name"
             if shadowed else "")
    if found:
        backbone = f"torchvision:{found[0]}"
        return Choice(PRETRAINED_RECIPE,
                      (f'model.backbone.type="{backbone}"', "model.backbone.pretrained=true"),
                      f"pretrained features: the ImageNet weights of {backbone} are on this "
                      f"machine{other}")
    return Choice(SCRATCH_RECIPE, (),
                  "from scratch: no pretrained weights on this machine; for pretrained "
                  "features put a torchvision ImageNet file such as mobilenet_v2-b0353104.pth "
                  f"into {_home_short(hub_checkpoints())}, see {GUIDE}{other}")


def _home_short(path: Path) -> str:
    """``path`` with the home folder written ``~`` (the line goes into shared run files)."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def summary() -> str:
    """What ``deepclust recipes`` says about ``auto``."""
    return (f"Picks {PRETRAINED_RECIPE} on a torchvision backbone when its ImageNet weights are "
            f"in torch hub's cache, else {SCRATCH_RECIPE} from scratch "
            "(deepclust show auto says which).")


def with_choice(raw: rc.Raw, choice: Choice) -> rc.Raw:
    """``raw`` with ``choice`` recorded under ``raw[AUTO]``, its line the start of the line."""
    return {**raw, AUTO: {**raw.get(AUTO, {}), CHOICE: choice.record(), "line": choice.line}}


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


def _pretrained(backbone: Any) -> bool:
    return isinstance(backbone, dict) and (bool(backbone.get("weights"))
                                           or backbone.get("pretrained") is True)


def auto_preset(raw: rc.Raw, data: Any, device: torch.device) -> tuple[rc.Raw, str]:
    """The overrides for ``data`` (an ImageSet) on ``device``, and the line that says what
    ``raw`` with them runs."""
    preset = overrides(raw, data, device)
    return preset, describe(_merged(raw, preset), data, device, preset)


def overrides(raw: rc.Raw, data: Any, device: torch.device) -> rc.Raw:
    """The auto preset's overrides of ``raw`` for ``data`` (an ImageSet) on ``device``."""
    gpu = device.type == "cuda"
    side, n = _side(data), len(data)
    kept = raw.get("model", {}).get("backbone", {})
    pretrained = _pretrained(kept)
    size = PRETRAINED_SIZE if pretrained else min(side, GPU_SIZE if gpu else CPU_SIZE)
    backbone: dict[str, Any] = (copy.deepcopy(kept) if pretrained
                                else {"type": "resnet18_cifar" if size <= 64 else "resnet18"}
                                if gpu else {"type": "small_cnn", "width": 32, "out_dim": 128})
    batch = min(GPU_BATCH if gpu else CPU_BATCH, n)
    drop_last = (n % batch) / n < MAX_DROPPED
    train: dict[str, Any] = {"batch_size": batch, "drop_last": drop_last}
    optimizer = raw.get("train", {}).get("optimizer", {})
    old_batch = raw.get("train", {}).get("batch_size", 256)
    if str(optimizer.get("type", "adam")).lower() in LINEAR_LR and "lr" in optimizer:
        train["optimizer"] = {"lr": optimizer["lr"] * batch / old_batch}
    trains = raw.get("train", {}).get("epochs", rc.Train().epochs) > 0
    if trains and pretrained and "backbone" in raw.get("train", {}).get("freeze", []):
        steps = n // batch if drop_last else math.ceil(n / batch)
        train["epochs"] = math.ceil(HEAD_STEPS / steps)  # heads only, on cached features
    elif not gpu and trains and "budget" not in raw.get("train", {}):
        train["budget"] = CPU_BUDGET
    if "budget" in train or "budget" in raw.get("train", {}):
        train["epochs"] = BUDGETED_EPOCHS  # the budget decides how many of them run
    heads = {}
    if not gpu:
        for name, head in raw.get("model", {}).get("heads", {}).items():
            if isinstance(head, dict) and head.get("hidden", 0) > CPU_HEAD_WIDTH:
                heads[name] = {"hidden": CPU_HEAD_WIDTH}
    normalize = {} if pretrained else {"normalize": True}  # pretrained: the weights' own
    augment = {"size": size, **normalize, "flip_p": 0.5, "rotate": 0.0, "shear": 0.0,
               "crop_scale": [0.3, 1.0]}
    if raw.get("augment", {}).get("type", "simclr") not in ("simclr", "byol", "moco_v2"):
        augment = {"size": size, **normalize}
    encoders = {} if pretrained else _carried_encoders(raw, backbone)
    return {"model": {"backbone": backbone, **({"heads": heads} if heads else {})},
            "augment": augment, "train": train, **({"stages": encoders} if encoders else {})}


def _carried_encoders(raw: rc.Raw, backbone: dict[str, Any]) -> rc.Raw:
    """``stages.NAME.model.encoders.PART = backbone`` for every encoder of a later stage that
    starts from an earlier stage's backbone (``init_from = "STAGE:backbone"``, cIDFD's frozen
    background encoder): the preset changed that backbone, so the encoder must be built alike."""
    out: dict[str, Any] = {}
    stages = raw.get("stage", [])
    for index, stage in enumerate(stages):
        encoders = stage.get("model", {}).get("encoders", {}) if isinstance(stage, dict) else {}
        for part, table in encoders.items():
            if isinstance(table, dict) and str(table.get("init_from", "")).endswith(":backbone"):
                name = rc.stage_name(stages, index)
                out.setdefault(name, {"model": {"encoders": {}}})["model"]["encoders"][part] = {
                    **backbone, "init_from": table["init_from"]}
    return out


def _merged(raw: rc.Raw, preset: rc.Raw, user: rc.Raw | None = None) -> rc.Raw:
    """``raw`` with ``preset`` merged (the backbone table replaced whole unless ``user`` names
    its type), then ``user``."""
    user = user or {}
    out = {k: v for k, v in copy.deepcopy(raw).items() if k != AUTO}
    if "type" not in user.get("model", {}).get("backbone", {}):
        out.setdefault("model", {})["backbone"] = preset["model"]["backbone"]
    rest = {k: v for k, v in preset.items() if k != "model"}
    rest["model"] = {k: v for k, v in preset["model"].items() if k != "backbone"}
    return rc.merge(rc.merge(out, rest), user)


def describe(raw: rc.Raw, data: Any, device: torch.device, changed: rc.Raw,
             hint: bool = True) -> str:
    """The line that says what ``raw`` (the recipe with the preset and ``--set`` merged) runs;
    ``changed``: the preset's own overrides, for the heads it narrowed; ``hint``: whether a
    from-scratch run is told about pretrained features."""
    model, train = raw.get("model", {}), raw.get("train", {})
    backbone = model.get("backbone", {})
    backbone = backbone if isinstance(backbone, dict) else {"type": backbone}
    pretrained = _pretrained(backbone)
    size = raw.get("augment", {}).get("size") or _side(data)
    batch = train.get("batch_size", rc.Train().batch_size)
    epochs = train.get("epochs", rc.Train().epochs)
    heads = [n for n, h in changed["model"].get("heads", {}).items()
             if model.get("heads", {}).get(n, {}).get("hidden") == h["hidden"]]
    return (f"auto preset for {data.name} ({len(data)} images, {_side(data)} px, "
            f"{data.channels} channel(s)) on {'a GPU' if device.type == 'cuda' else 'the CPU'}"
            f": {backbone.get('type', rc.Model().backbone.type)}"
            f"{' (pretrained)' if pretrained else ''} at {size} px, batch {batch}"
            + (" (drop_last)" if train.get("drop_last") else "")
            + (f", budget {train['budget']}" if train.get("budget") and epochs > 0
               else f", {epochs} epochs")
            + (f", heads {', '.join(heads)} at width {CPU_HEAD_WIDTH}" if heads else "")
            + ("" if pretrained or not hint else f"; from scratch: {_pretrained_hint()}"))


def _pretrained_hint() -> str:
    """What a from-scratch run on a small set should know: pretrained features usually do
    better, and which ones this machine has."""
    from corekit.components.pretrained import torchvision_on_machine, use_instead

    found = use_instead(torchvision_on_machine())
    where = (f"{found}, with deepclust train {PRETRAINED_RECIPE} (or simply deepclust train "
             f"{RECIPE})" if found else GUIDE)
    return f"pretrained features usually do better on small sets ({where})"


def with_auto_preset(raw: rc.Raw, data: Any, device: torch.device) -> rc.Raw:
    """``raw`` with the auto preset merged (the backbone table replaced whole unless ``--set``
    named its type) and then what ``--set`` gave (``raw[AUTO][USER_SET]``), recorded under the
    recipe's ``auto`` key (``line``: what runs, after the ``auto`` recipe's choice if there is
    one; ``preset``: the overrides)."""
    preset = overrides(raw, data, device)
    made = raw.get(AUTO, {})
    merged = _merged(raw, preset, made.get(USER_SET, {}))
    line = describe(merged, data, device, preset, hint=CHOICE not in made)
    if CHOICE in made:  # the auto recipe's choice, then what runs
        line = f"{made['line']}; {line}"
    merged[AUTO] = {**{k: v for k, v in made.items() if k == CHOICE}, "line": line,
                    "preset": preset}
    merged["preset"] = "auto"
    return merged
