"""The report speaks the folder's language: class folder names in assignments.csv, the
confusion matrix and the sample grids; a --seeds run's top-level report and assignments.csv from
a seed picked without labels; the epochs that ran; a k-means-on-pixels baseline line."""

import csv
import json

import pytest

from corekit.cli import main
from corekit.data import load_dataset
from corekit.testing import write_digits_folder

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """300 digits as 16-px PNGs, one folder per class, named by the digit's word."""
    return write_digits_folder(tmp_path_factory.mktemp("named") / "digits-named", range(300),
                               NAMES.__getitem__)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _train(folder, out, *extra):
    assert main(["train", "simclr-kmeans", "--data", f"imagefolder:{folder}", "--set",
                 "train.epochs=2", "--set", "train.steps_per_epoch=2", "--out", str(out),
                 "--no-progress", *extra]) == 0


def test_an_image_folder_keeps_its_class_names(folder):
    data = load_dataset(f"imagefolder:{folder}")
    assert data.classes == tuple(sorted(NAMES))
    assert data.subset(50, 0).classes == data.classes


def test_the_report_names_classes_and_shows_the_epochs_that_ran(folder, tmp_path, capsys):
    out = tmp_path / "run"
    _train(folder, out)
    printed = capsys.readouterr().out
    rows = _rows(out / "assignments.csv")
    assert {r["label"] for r in rows} == set(NAMES)
    first = sorted(NAMES)[int(rows[0]["label_index"])]
    assert rows[0]["label"] == first == rows[0]["image"].split("/")[0]
    page = (out / "report" / "index.html").read_text()
    confusion = _rows(out / "report" / "confusion.csv")
    assert {r["class \\ cluster"] for r in confusion} == set(NAMES)
    assert "<th>eight</th>" in page and "mostly class " in page
    assert any(f"mostly class {name} (" in page for name in NAMES)  # the grids' captions
    assert "main</td><td>imagefolder:digits-named, 2 epochs</td>" in page  # as they ran
    # the baseline: in final.json, the console summary, the page and report.md
    final = json.loads((out / "final.json").read_text())
    assert final["pixel_baseline"]["n_images"] == 300 and 0 < final["pixel_baseline"]["nmi"] < 1
    assert "baseline, k-means on raw pixels of 300 images: NMI" in printed
    assert "this run beat it" in printed or "this run did not beat it" in printed
    assert 'id="baseline"' in page
    assert "Baseline, k-means on raw pixels" in (out / "report.md").read_text()


def test_what_ran_shows_the_epochs_a_budget_left(folder, tmp_path):
    out = tmp_path / "budget"
    _train(folder, out, "--budget", "3s", "--set", "train.epochs=400")
    ran = json.loads((out / "stages" / "main" / "plan.json").read_text())["epochs_run"]
    assert ran < 400
    page = (out / "report" / "index.html").read_text()
    assert f"imagefolder:digits-named, {ran} epochs ran (the recipe states 400)" in page
    assert f"{ran} epochs ran (the recipe states 400)" in (out / "report.md").read_text()


def test_a_seeds_run_reports_the_seed_picked_without_labels(folder, tmp_path, capsys):
    out = tmp_path / "seeds"
    _train(folder, out, "--seeds", "2")
    printed = capsys.readouterr().out
    final = json.loads((out / "final.json").read_text())
    losses = {}
    for seed in final["seeds"]:
        records = [json.loads(x) for x in
                   (out / f"seed-{seed}" / "metrics.jsonl").read_text().splitlines()]
        losses[seed] = records[-1]["loss"]
    picked = min(losses, key=losses.get)
    assert final["picked_seed"] == picked and "lowest final training loss" in final["picked_by"]
    assert (out / "assignments.csv").read_text() == \
        (out / f"seed-{picked}" / "assignments.csv").read_text()
    page = (out / "report" / "index.html").read_text()
    assert f"The report of seed {picked} of this --seeds run" in page
    assert 'href="../seed-' in page  # its run files are the seed's
    assert f"report and assignments.csv: seed {picked}" in printed
    assert "baseline, k-means on raw pixels" in printed


def test_recipes_say_mix_dsa_pa_equals_propos(capsys):
    assert main(["recipes"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "mix-dsa-pa" in x)
    assert "Equals ProPos by construction" in line
