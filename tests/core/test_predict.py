"""Your own images: every run writes assignments.csv; ``deepclust predict`` assigns new images
with a trained run; ``deepclust export`` writes safetensors (issue: your own images)."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from corekit.cli import main
from corekit.testing import write_digits_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two image folders of scikit-learn digits (16 px PNGs, one subfolder per class)."""
    root = tmp_path_factory.mktemp("imgs")
    write_digits_folder(root / "train", range(0, 400))
    write_digits_folder(root / "new", range(400, 520))
    return root


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def train(folders, out, *extra):
    assert main(["train", "simclr-kmeans", "--data", f"imagefolder:{folders / 'train'}",
                 "--set", "train.epochs=1", "--set", "train.steps_per_epoch=3", "--out",
                 str(out), "--no-progress", *extra]) == 0


def test_assignments_csv_names_each_image_relative_to_its_folder(folders, tmp_path):
    out = tmp_path / "run"
    train(folders, out)
    rows = read_csv(out / "assignments.csv")
    assert len(rows) == 400 and list(rows[0]) == ["index", "image", "cluster", "confidence",
                                                  "label", "label_index"]
    assert rows[0]["label"] == "class0"  # the class folder's name, its number beside it
    assert rows[0]["image"] == "class0/0.png"  # relative: no absolute path in shared files
    assert not any(str(folders) in r["image"] for r in rows)
    confidence = [float(r["confidence"]) for r in rows]
    assert min(confidence) >= 0 and max(confidence) <= 1 and len(set(confidence)) > 10
    final = json.loads((out / "final.json").read_text())
    from corekit import metrics

    again = metrics.evaluate(torch.tensor([int(r["label_index"]) for r in rows]),
                             torch.tensor([int(r["cluster"]) for r in rows]), 10)
    assert again["nmi"] == pytest.approx(final["nmi"])


def test_predict_assigns_new_and_training_images_as_the_run_did(folders, tmp_path, capsys):
    out = tmp_path / "run"
    train(folders, out)
    capsys.readouterr()
    assert main(["predict", str(out), "--data", f"imagefolder:{folders / 'train'}",
                 "--out", str(tmp_path / "same.csv")]) == 0
    same = read_csv(tmp_path / "same.csv")
    trained = read_csv(out / "assignments.csv")
    agree = np.mean([a["cluster"] == b["cluster"] for a, b in zip(same, trained, strict=True)])
    assert agree > 0.98  # the run's own centroids reproduce its own assignments
    assert main(["predict", str(out), "--data", f"imagefolder:{folders / 'new'}"]) == 0
    printed = capsys.readouterr().out
    assert "120 images of new ->" in printed and "NMI" in printed
    new = read_csv(out / "predictions" / "new.csv")
    files = sorted(p.relative_to(folders / "new").as_posix()
                   for p in (folders / "new").rglob("*.png"))
    assert sorted(r["image"] for r in new) == files


def test_predict_with_a_head_and_wrong_channels(folders, tmp_path, capsys):
    out = tmp_path / "cc"
    assert main(["train", "cc", "--data", "digits", "--set", "train.epochs=1",
                 "--set", "train.steps_per_epoch=2", "--set", "data.subset=200", "--out",
                 str(out), "--no-progress"]) == 0
    trained = read_csv(out / "assignments.csv")
    assert main(["predict", str(out), "--data", "digits", "--out", str(tmp_path / "p.csv")]) == 0
    predicted = read_csv(tmp_path / "p.csv")
    assert len(predicted) == 1797 and float(predicted[0]["confidence"]) <= 1
    capsys.readouterr()
    rgb = tmp_path / "rgb" / "a"
    rgb.mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8) + 80).save(rgb / "x.png")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8) + 10).save(rgb / "y.png")
    assert main(["predict", str(out), "--data", f"imagefolder:{rgb.parent}"]) == 2
    assert "trained on 1-channel images" in capsys.readouterr().err
    assert trained  # the run's own file is untouched by predictions
    assert main(["predict", str(tmp_path / "nothing"), "--data", "digits"]) == 2


def test_export_writes_safetensors_that_reload(folders, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    train(folders, out)
    assert main(["export", str(out)]) == 0
    tensors = load_file(str(out / "export" / "model.safetensors"))
    outputs = torch.load(out / "stages" / "main" / "outputs.pt", weights_only=True)
    for key, value in outputs["parts"]["backbone"].items():
        assert torch.equal(tensors[f"backbone.{key}"], value)
    assert tensors["centroids"].shape[0] == 10
    meta = json.loads((out / "export" / "export.json").read_text())
    assert meta["assign"] == "centroids" and meta["data"]["channels"] == 1
    assert (out / "export" / "recipe.toml").read_text() == (out / "recipe.toml").read_text()


def test_k_from_the_command_line_or_estimated_for_a_flat_folder(folders, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in sorted((folders / "train").rglob("*.png"))[:300]:
        (flat / path.name).write_bytes(path.read_bytes())
    base = ["train", "simclr-kmeans", "--data", f"imagefolder:{flat}", "--set",
            "train.epochs=1", "--set", "train.steps_per_epoch=2", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "k4"), "--k", "4"]) == 0
    assert {r["cluster"] for r in read_csv(tmp_path / "k4" / "assignments.csv")} <= \
        {"0", "1", "2", "3"}
    assert not (tmp_path / "k4" / "k_estimate.json").exists()
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "est")]) == 0
    printed = capsys.readouterr().out
    estimate = json.loads((tmp_path / "est" / "k_estimate.json").read_text())
    assert f"estimated K = {estimate['k']}" in printed and "--k N" in printed
    assert max(estimate["silhouette"].values()) == estimate["silhouette"][str(estimate["k"])]
    assert 5 <= estimate["k"] <= 15  # ten digit classes, judged from pixels only
    assert (tmp_path / "est" / "k_estimate.png").exists()
    assert main(["evaluate", str(tmp_path / "est")]) == 0  # the estimate is in recipe.toml
    assert main([*base, "--out", str(tmp_path / "bad"), "--k", "0"]) == 2


def test_predict_replaces_only_files_it_wrote(folders, tmp_path, capsys):
    """``predict --out RUN/final.json`` once replaced the run's results with a CSV (and export
    overwrote a user's model.safetensors): a file they did not write, or that changed since,
    is refused, exit 2; their own earlier file is replaced."""
    out = tmp_path / "run"
    train(folders, out)
    final = (out / "final.json").read_text()
    new = ["--data", f"imagefolder:{folders / 'new'}"]
    capsys.readouterr()
    assert main(["predict", str(out), *new, "--out", str(out / "final.json")]) == 2
    err = capsys.readouterr().err
    assert f"would replace {out / 'final.json'}, which it did not write" in err
    assert "give --out a new file name" in err and (out / "final.json").read_text() == final
    mine = tmp_path / "mine.csv"
    for _ in range(2):  # its own file, unchanged: replaced
        assert main(["predict", str(out), *new, "--out", str(mine)]) == 0
        assert main(["predict", str(out), *new]) == 0
    mine.write_text(mine.read_text() + "my note\n")
    assert main(["predict", str(out), *new, "--out", str(mine)]) == 2
    assert mine.read_text().endswith("my note\n")
    assert main(["predict", str(out), *new, "--out", str(tmp_path)]) == 2  # a folder


def test_export_replaces_only_files_it_wrote(folders, tmp_path, capsys):
    out = tmp_path / "run"
    train(folders, out)
    final = (out / "final.json").read_text()
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "model.safetensors").write_bytes(b"the user's")
    capsys.readouterr()
    assert main(["export", str(out), "--out", str(deploy)]) == 2
    assert "give --out a new folder" in capsys.readouterr().err
    assert (deploy / "model.safetensors").read_bytes() == b"the user's"
    assert not (deploy / "export.json").exists()
    assert main(["export", str(out), "--out", str(out)]) == 2  # the run's own recipe.toml
    assert main(["export", str(out), "--out", str(out / "final.json")]) == 2  # a file
    assert (out / "final.json").read_text() == final
    for _ in range(2):
        assert main(["export", str(out)]) == 0
