"""The shipped ``simclr-selflabel`` recipe (issue 30 item 7): it composes on digits, MNIST and
an own image folder (the auto preset), and its tiny version trains end to end with stage 2
reading what the recipe says: k-means targets written into the ``targets`` state before
training, and the head's confident weak-view predictions (``confidence_threshold``) as the
labels of the strong view."""

from __future__ import annotations

from pathlib import Path

import torch

from corekit import recipe as rc
from corekit.cli import main
from corekit.components.losses import TargetCrossEntropy
from corekit.handoff import StageOutputs
from corekit.plugins import load_plugins
from corekit.testing import write_digits_folder
from corekit.views import view_key

RECIPE = "simclr-selflabel"
MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
THRESHOLD = 0.3  # the tiny run's head is far from the recipe's 0.95; some pass 0.3, not all
TINY = ["--set", "data.subset=256", "--set", "train.batch_size=64",
        "--set", "stage.0.train.epochs=1", "--set", "stage.0.train.steps_per_epoch=2",
        "--set", "stage.1.train.epochs=3", "--set", "stage.1.train.steps_per_epoch=4",
        "--set", "stage.1.train.optimizer.lr=1e-2",
        "--set", "stage.1.losses.self_label.start_epoch=1",
        "--set", f"stage.1.pseudo_labeler.confident.threshold={THRESHOLD}",
        "--set", "stage.1.pseudo_labeler.kmeans.clusterer.n_init=1", "--no-progress"]


def test_the_recipe_composes_on_digits_mnist_and_an_own_folder(tmp_path, capsys):
    assert main(["check", RECIPE, "--data", "digits"]) == 0
    folder = write_digits_folder(tmp_path / "folder", range(120))
    assert main(["check", RECIPE, "--data", f"imagefolder:{folder}"]) == 0
    if MNIST.is_dir():
        assert main(["check", RECIPE, "--data", f"mnist:{MNIST}"]) == 0
    out = capsys.readouterr().out
    assert "confident: confidence_threshold (per step)" in out
    assert "kmeans: cluster -> targets (before training)" in out


def test_stage_two_evaluates_the_ema_and_self_labels_the_strong_view_from_the_weak():
    recipe = rc.resolve(RECIPE, load_plugins().find_recipe, "digits")
    pretrain, selflabel = recipe.stages
    assert pretrain.losses["instance"].type == "nt_xent" and pretrain.eval.assign == "clusterer"
    assert selflabel.eval.assign == "head:target:cluster"
    assert set(selflabel.model.target.parts) == {"backbone", "cluster"}
    assert selflabel.pseudo_labeler["confident"].options["threshold"] == 0.95


def test_the_tiny_recipe_trains_and_stage_two_reads_k_means_and_confident_targets(
        tmp_path, monkeypatch):
    seen: list[dict] = []
    original = TargetCrossEntropy.__call__

    def spy(self, step):
        loss = original(self, step)  # first: the step caches its outputs with their graph
        given = step.targets(self.targets)
        weak = step.output(self.head, "weak").detach().max(dim=1).values
        seen.append({"targets": self.targets, "epoch": step.epoch,
                     "view": view_key(list(step.views), self.view), "mask": given.mask.clone(),
                     "weak_confident": weak >= THRESHOLD})
        return loss

    monkeypatch.setattr(TargetCrossEntropy, "__call__", spy)
    out = tmp_path / "run"
    assert main(["train", RECIPE, "--data", "digits", "--out", str(out), *TINY]) == 0

    saved = StageOutputs.load(out / "stages" / "selflabel").state["targets"]
    assert bool(saved["written"]) and len(saved["index"]) == 256  # keep = 1.0: every image
    assert len(set(saved["label"].tolist())) > 1

    kmeans = [s for s in seen if s["targets"] == "targets"]
    confident = [s for s in seen if s["targets"] == "confident"]
    assert len(kmeans) == 3 * 4 and all(s["mask"].all() for s in kmeans)
    assert all(s["view"] == "weak" for s in kmeans)
    assert len(confident) == 2 * 4 and {s["epoch"] for s in confident} == {1, 2}
    assert all(s["view"] == "strong" for s in confident)
    for s in confident:  # the labels of the strong view are the weak view's confident ones
        assert torch.equal(s["mask"], s["weak_confident"])
    masked = torch.cat([s["mask"] for s in confident])
    assert 0 < int(masked.sum()) < len(masked)  # some images pass, some are masked out
    assert "nmi" in str((out / "final.json").read_text()).lower()


def test_a_recipe_without_the_confident_labeler_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'name = "bad"\nextends = "{RECIPE}"\n'
                   '[stages.selflabel]\ndrop = ["pseudo_labeler.confident"]\n')
    assert main(["check", str(bad), "--data", "digits"]) == 2
