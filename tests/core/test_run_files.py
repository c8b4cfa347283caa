"""A run directory people can read and share: no absolute data paths in recipe.toml or
final.json (they are in local.json), report.md says what ran, --seeds writes a summary."""

import json

import numpy as np
import pytest
from PIL import Image

from corekit.cli import main
from corekit.run_files import public_command, public_data_name, redact, restore


def test_public_names():
    assert public_data_name("imagefolder:/home/me/cats") == "imagefolder:cats"
    assert public_data_name("mnist:../shared/data/mnist") == "mnist:mnist"
    assert public_data_name("digits") == "digits"
    raw = {"data": {"name": "imagefolder:/a/b/cats", "reference": "mnist:/x/mnist"},
           "stage": [{"data": {"name": "imagefolder:/c/dogs"}}]}
    public, real = redact(raw)
    assert public["data"] == {"name": "imagefolder:cats", "reference": "mnist:mnist"}
    assert public["stage"][0]["data"]["name"] == "imagefolder:dogs"
    assert real["imagefolder:cats"] == "imagefolder:/a/b/cats"
    assert public_command(["train", "cc", "--data", "imagefolder:/a/b/cats"]) == \
        "deepclust train cc --data imagefolder:cats"


def test_a_run_on_a_folder_keeps_its_paths_local(tmp_path, capsys):
    folder = tmp_path / "my images" / "cats"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "simclr-kmeans", "--data", f"imagefolder:{folder}", "--k", "3",
                 "--set", "train.epochs=1", "--set", "train.steps_per_epoch=1",
                 "--set", "train.budget=0", "--out", str(out), "--no-progress"]) == 2
    assert "train.budget" in capsys.readouterr().err  # a zero budget is refused
    assert main(["train", "simclr-kmeans", "--data", f"imagefolder:{folder}", "--k", "3",
                 "--set", "train.epochs=1", "--set", "train.steps_per_epoch=1", "--out",
                 str(out), "--no-progress"]) == 0
    for name in ("recipe.toml", "final.json", "run.json", "report.md", "assignments.csv",
                 "metrics.jsonl"):
        assert str(tmp_path) not in (out / name).read_text(), name
    local = json.loads((out / "local.json").read_text())
    assert local["data"] == {"imagefolder:cats": f"imagefolder:{folder}"}
    report = (out / "report.md").read_text()
    assert "recipe: `simclr-kmeans`, preset: `auto`, seed: 0" in report
    assert "stages: main (imagefolder:cats, 1 epochs)" in report
    assert "command: `deepclust train simclr-kmeans --data imagefolder:cats --k 3" in report
    assert main(["evaluate", str(out)]) == 0  # local.json restores the real folder
    restored = restore({"data": {"name": "imagefolder:cats"}}, out)
    assert restored["data"]["name"] == f"imagefolder:{folder}"


def test_seeds_write_a_summary_report(tmp_path):
    out = tmp_path / "seeds"
    assert main(["train", "simclr-kmeans", "--data", "digits", "--seeds", "2", "--set",
                 "train.epochs=1", "--set", "train.steps_per_epoch=2", "--out", str(out),
                 "--no-progress"]) == 0
    final = json.loads((out / "final.json").read_text())
    report = (out / "report.md").read_text()
    assert report.startswith("# simclr-kmeans: 2 seeds")
    for seed, run in zip(final["seeds"], final["runs"], strict=True):
        assert f"| {seed} | {run['nmi']:.4f} |" in report
        recipe = (out / f"seed-{seed}" / "recipe.toml").read_text()
        assert f"seed = {seed}" in recipe  # each seed's recipe says its own seed
    assert f"{final['nmi_mean']:.4f} ± {final['nmi_std']:.4f}" in report
    with pytest.raises(SystemExit):
        main(["train", "simclr-kmeans", "--seeds", "two"])
