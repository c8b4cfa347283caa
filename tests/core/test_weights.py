"""Pretrained weights: ``weights = "PATH"`` (safetensors or a torch file read with
weights_only) on any part, ``pretrained = true`` for timm offline, and the ``features-kmeans``
baseline that trains nothing. Weight files are written by the tests (nothing is downloaded)."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from corekit import checkpoint_io as checkpoint
from corekit.cli import main
from corekit.components.backbones import small_cnn

RECIPE = """
name = "small-features-kmeans"
[model.backbone]
type = "small_cnn"
width = 8
out_dim = 16
[augment]
type = "identity"
views = 1
[clusterer]
type = "kmeans"
every = 0
before_training = false
[train]
epochs = 0
"""


def command(tmp_path, *extra):
    """features-kmeans's shape (no loss, 0 epochs) with a small CNN instead of timm's."""
    recipe = tmp_path / "small.toml"
    recipe.write_text(RECIPE)
    return ["train", str(recipe), "--data", "digits", "--set", "data.subset=300", "--set",
            "augment.size=8", "--no-progress", *extra]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_backbone_weights_from_a_file_are_used(tmp_path, suffix):
    torch.manual_seed(123)
    source = small_cnn(in_channels=1, width=8, out_dim=16)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
                   path)
    out = tmp_path / "run"
    assert main(command(tmp_path, "--set", f'model.backbone.weights="{path}"',
                        "--out", str(out))) == 0
    saved = checkpoint.load(out / "stages" / "main" / "outputs.pt")["parts"]["backbone"]
    for key, value in source.state_dict().items():
        assert torch.equal(saved[key], value), key  # loaded, and untouched: 0 epochs
    assert (out / "assignments.csv").exists()


def test_bad_weight_files_are_clear_errors(tmp_path, capsys):
    wrong = tmp_path / "wrong.safetensors"
    save_file({"conv.weight": torch.zeros(3, 3)}, str(wrong))
    code = tmp_path / "code.pt"
    code.write_bytes(pickle.dumps(print))
    for path, message in ((tmp_path / "missing.pt", "does not exist"),
                          (wrong, "does not fit this part"),
                          (code, "pickled code is refused")):
        assert main(command(tmp_path, "--set", f'model.backbone.weights="{path}"',
                            "--out", str(tmp_path / "x"))) == 2
        assert message in capsys.readouterr().err, message
    assert not (tmp_path / "x").exists()


def test_timm_pretrained_offline_names_the_file_to_provide(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("timm")
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import time otherwise
    args = ["train", "features-kmeans", "--data", "digits", "--set", "data.subset=50",
            "--set", 'model.backbone.type="timm:resnet10t"', "--set", "augment.size=32",
            "--set", "model.backbone.pretrained=true", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "could not be downloaded" in err and 'weights = "PATH/TO/FILE"' in err
