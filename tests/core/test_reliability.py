"""Runs are never lost or garbled (issue: reliability): an --out that holds a run is refused
unless continued or replaced; unwritable folders, full disks, broken recipe files and changed
architectures are clear errors; a SIGKILLed run resumes exactly; Ctrl-C says the truth."""

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from corekit import checkpoint_io as checkpoint
from corekit import recipe as rc
from corekit.cli import main
from corekit.errors import RecipeError, TrainingError
from corekit.run_files import interrupted_note

QUICK = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--no-progress"]


def test_an_out_that_holds_a_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "simclr-kmeans", "--out", str(out), *QUICK]) == 0
    first = (out / "final.json").read_text()
    assert main(["train", "simclr-kmeans", "--out", str(out), *QUICK]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "final.json").read_text() == first  # nothing replaced
    (out / "my-notes.txt").write_text("keep me")
    assert main(["train", "simclr-kmeans", "--out", str(out), "--overwrite",
                 "--set", "train.seed=3", *QUICK]) == 0
    assert (out / "my-notes.txt").read_text() == "keep me"  # only the run's own files go
    assert json.loads((out / "final.json").read_text()) != json.loads(first)


@pytest.mark.parametrize("where", ["below-a-file", "proc"])
def test_an_unwritable_out_is_refused_before_any_data_is_loaded(tmp_path, capsys, where):
    if where == "below-a-file":
        (tmp_path / "file").write_text("x")
        out, message = tmp_path / "file" / "run", "is a file, not a folder"
    else:
        out, message = "/proc/deepclust-run", "cannot be written"
    assert main(["train", "simclr-kmeans", "--data", "mnsit-is-never-loaded", "--out",
                 str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    assert message in err and "unknown dataset" not in err


def test_full_disk_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic({"epoch": 1}, path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(TrainingError, match="no space left on device.*the last good "
                                            "checkpoint .* is kept"):
        checkpoint.save_atomic({"epoch": 2}, path)
    assert checkpoint.load(path) == {"epoch": 1}


class _Usage:
    def __init__(self, free):
        self.total, self.used, self.free = 1 << 40, 1 << 40, free


@pytest.mark.parametrize("first", [False, True])
def test_a_full_disk_in_torch_save_is_a_training_error(tmp_path, monkeypatch, first):
    """torch's zip writer reports a full disk as a RuntimeError; told apart by the free space,
    it says so (exit 2), keeps the last good checkpoint and leaves no temp file behind."""
    path = tmp_path / "stage" / "checkpoint.pt"
    if not first:
        checkpoint.save_atomic({"epoch": 1}, path)

    def full(payload, fh):
        fh.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr("shutil.disk_usage", lambda folder: _Usage(free=4096))
    with pytest.raises(TrainingError) as caught:
        checkpoint.save_atomic({"epoch": 2, "w": torch.zeros(1 << 20)}, path)
    said = str(caught.value)
    assert said.startswith(f"no space left on device while writing {path}; ")
    if first:
        assert "no earlier checkpoint exists yet" in said and not path.exists()
    else:
        assert "the last good checkpoint" in said and "continue with --resume" in said
        monkeypatch.undo()
        assert checkpoint.load(path) == {"epoch": 1}
    assert [p.name for p in path.parent.iterdir()] == ([] if first else ["checkpoint.pt"])


def test_another_runtime_error_in_torch_save_is_not_called_a_full_disk(tmp_path, monkeypatch):
    def broken(payload, fh):
        raise RuntimeError("cannot pickle this")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="cannot pickle this"):
        checkpoint.save_atomic({"epoch": 2}, tmp_path / "checkpoint.pt")
    assert list(tmp_path.iterdir()) == []


def test_broken_recipe_files(tmp_path):
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbfname = 'x'\n")
    with pytest.raises(RecipeError, match="UTF-8 BOM"):
        rc.load_toml(bom)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"name = 'x'\ndescription = 'caf\xe9'\n")
    with pytest.raises(RecipeError, match="not valid UTF-8 .byte 0xe9 on line 2"):
        rc.load_toml(latin)
    assert main(["check", str(tmp_path)]) == 2  # a folder, not a file


def test_a_checkpoint_with_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "checkpoint.pt"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path.write_bytes(pickle.dumps({"epoch": Evil()}))
    with pytest.raises(TrainingError, match="cannot be read"):
        checkpoint.load(path)
    assert not marker.exists()


def test_resume_with_another_architecture_names_the_parts(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "simclr-kmeans", "--out", str(out), "--set", "train.epochs=2",
                 "--set", "train.steps_per_epoch=2", "--no-progress"]) == 0
    assert main(["train", "simclr-kmeans", "--out", str(out), "--resume", "--set",
                 "train.epochs=3", "--set", "train.steps_per_epoch=2", "--set",
                 "model.heads.proj.out_dim=32", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "trained with another network: heads.proj" in err and "in the checkpoint" in err
    assert "encoders.backbone" not in err


def test_resume_of_a_finished_run_says_so_and_seeds_resume(tmp_path, capsys):
    out = tmp_path / "seeds"
    args = ["train", "simclr-kmeans", "--seeds", "2", "--out", str(out), *QUICK]
    assert main(args) == 0
    first = json.loads((out / "final.json").read_text())
    assert main(["train", "simclr-kmeans", "--out", str(out / "seed-0"), "--resume",
                 *QUICK]) == 2
    assert "is finished" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished, read from") == 2
    assert json.loads((out / "final.json").read_text())["nmi"] == first["nmi"]


def test_interrupted_note(tmp_path):
    assert "no checkpoint was written yet" in interrupted_note(tmp_path)
    (tmp_path / "stages" / "main").mkdir(parents=True)
    (tmp_path / "stages" / "main" / "checkpoint.pt").write_bytes(b"x")
    assert "continue with --resume" in interrupted_note(tmp_path)


def test_a_sigkilled_run_resumes_with_nothing_lost(tmp_path):
    """Killed (SIGKILL) after its second checkpoint; resumed, it ends as an uninterrupted run
    does (the epoch order and every state are a function of the checkpoint)."""
    args = ["simclr-kmeans", "--data", "digits", "--set", "data.subset=512", "--set",
            "train.epochs=5", "--set", "train.steps_per_epoch=6", "--set",
            "train.batch_size=64", "--set", "train.eval_every=0", "--no-progress"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "corekit.cli", "train"]
    subprocess.run([*cli, *args, "--out", str(tmp_path / "full")], env=env, check=True,
                   capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cli, *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "stages" / "main" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                if checkpoint.load(ckpt)["epoch"] >= 1:
                    break
            except TrainingError:
                pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "final.json").exists(), "the run finished before it could be killed"
    subprocess.run([*cli, *args, "--out", str(killed), "--resume"], env=env, check=True,
                   capture_output=True)
    full = json.loads((tmp_path / "full" / "final.json").read_text())
    resumed = json.loads((killed / "final.json").read_text())
    for key in ("nmi", "acc", "ari"):
        assert resumed[key] == full[key]
    epochs = [json.loads(x)["epoch"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5]
