"""The auto preset: a recipe given data no preset was written for fits itself to the images
and the device, says so in one line, and writes it to the run directory."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from corekit import auto
from corekit import recipe as rc
from corekit.cli import main
from corekit.data import load_dataset


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """100 grey 24-px images in a flat folder (no labels), two kinds of pattern."""
    root = tmp_path_factory.mktemp("own")
    gen = np.random.default_rng(0)
    for i in range(100):
        base = np.tile(np.linspace(0, 255, 24), (24, 1)) if i % 2 else np.full((24, 24), 90.0)
        pixels = np.clip(base + gen.normal(0, 20, (24, 24)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"img{i:03d}.png")
    return root


def test_applies_only_where_no_preset_fits():
    raw = {"data": {"name": "cifar10"}, "presets": {"mnist": {}}}
    assert auto.applies(raw, "imagefolder:/x") and auto.applies(raw, "stl10")
    assert not auto.applies(raw, "mnist:/somewhere") and not auto.applies(raw, "cifar10")
    assert not auto.applies(raw, None)


def test_rules_on_cpu_and_gpu(folder):
    data = load_dataset(f"imagefolder:{folder}")
    raw = {"model": {"heads": {"proj": {"type": "mlp_projector", "hidden": 4096}}},
           "augment": {"type": "simclr"},
           "train": {"batch_size": 512, "optimizer": {"type": "sgd", "lr": 0.1}}}
    cpu, line = auto.auto_preset(raw, data, torch.device("cpu"))
    assert cpu["model"]["backbone"]["type"] == "small_cnn" and cpu["augment"]["size"] == 24
    assert cpu["train"]["batch_size"] == 100 and cpu["train"]["drop_last"]  # never > the set
    assert cpu["train"]["optimizer"]["lr"] == pytest.approx(0.1 * 100 / 512)
    assert cpu["train"]["budget"] == "5m" and cpu["model"]["heads"]["proj"]["hidden"] == 512
    assert cpu["train"]["epochs"] == auto.BUDGETED_EPOCHS  # the budget decides the epochs
    assert "100 images, 24 px, 1 channel(s)" in line and "small_cnn at 24 px" in line
    gpu, _ = auto.auto_preset(raw, data, torch.device("cuda"))
    assert gpu["model"]["backbone"]["type"] == "resnet18_cifar" and "budget" not in gpu["train"]
    assert "epochs" not in gpu["train"]  # no budget on a GPU: the recipe's epochs
    assert "heads" not in gpu["model"]


def test_an_encoder_carried_from_a_backbone_is_built_like_the_new_backbone(folder):
    """cIDFD's stage 2 starts a frozen encoder from stage 1's backbone: when the preset swaps
    the backbone, the encoder follows, or the hand-off refuses the two as different."""
    data = load_dataset(f"imagefolder:{folder}")
    raw = {"model": {"backbone": {"type": "resnet18_cifar"}},
           "stage": [{"name": "one"},
                     {"name": "two", "model": {"encoders": {
                         "old": {"type": "resnet18_cifar", "init_from": "one:backbone"},
                         "other": {"type": "mlp", "init_from": "one:head"}}}}]}
    preset, _ = auto.auto_preset(raw, data, torch.device("cpu"))
    assert preset["stages"] == {"two": {"model": {"encoders": {"old": {
        **preset["model"]["backbone"], "init_from": "one:backbone"}}}}}


def test_drop_last_only_while_it_drops_little():
    class Fake:
        name, size, channels = "fake", 32, 3

        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    assert auto.auto_preset({}, Fake(1030), torch.device("cpu"))[0]["train"]["drop_last"]
    assert not auto.auto_preset({}, Fake(200), torch.device("cpu"))[0]["train"]["drop_last"]


def test_show_and_train_say_and_keep_the_choice(folder, tmp_path, capsys):
    assert main(["show", "cc", "--data", f"imagefolder:{folder}"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("# auto preset for ") and "small_cnn at 24 px" in shown
    assert main(["show", "cc", "--data", "cifar10"]) == 0  # a preset: no auto
    assert "auto preset" not in capsys.readouterr().out
    out = tmp_path / "run"
    assert main(["train", "simclr-kmeans", "--data", f"imagefolder:{folder}", "--k", "2",
                 "--budget", "5s", "--set", "augment.size=16", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "auto preset for" in printed
    kept = json.loads((out / "auto_preset.json").read_text())
    assert kept["preset"]["model"]["backbone"]["type"] == "small_cnn"
    recipe = rc.validate(rc.load_toml(out / "recipe.toml"))
    assert recipe.stages[0].augment.size == 16  # --set wins over the auto preset
    assert recipe.stages[0].train.budget == "5s"
