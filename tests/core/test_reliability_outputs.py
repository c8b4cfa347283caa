"""The commands around a run never crash and never leak a traceback (issue 33, part A): a run
that collapses to one cluster ends with its report and says so; ``report``, ``predict`` and
``export`` on a read-only folder, an ``--out`` of the wrong kind, torn or corrupt run files
and a recipe that does not fit the saved networks exit 2 with what to do (or, where the rest
can still be made, say what is missing); ``new-plugin`` refuses names and folders it cannot
write."""

import contextlib
import csv
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from corekit.cli import main
from corekit.embedding import Undrawable, embed
from corekit.engine.metrics_log import MetricsLog, read_metrics

QUICK = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch cc run on 200 of the digits (its cluster head assigns)."""
    out = tmp_path_factory.mktemp("outputs") / "run"
    assert main(["train", "cc", "--data", "digits", "--set", "data.subset=200", "--out",
                 str(out), *QUICK]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run, this test's own to spoil."""
    return shutil.copytree(trained, tmp_path / "run")


def no_traceback(err):
    assert "Traceback" not in err and "Error:" not in err.replace("deepclust: error:", "")


# --- a run that collapses to one cluster ---------------------------------------------------


@pytest.mark.parametrize("sets", [["train.optimizer.lr=0.2565"],
                                  ["train.optimizer.lr=2", "losses.cluster.temperature=5"]],
                         ids=["lr-0.2565", "lr-2-temperature-5"])
def test_a_collapsed_run_finishes_with_its_report_and_says_so(tmp_path, sets):
    """The issue's commands: scikit-learn's t-SNE died natively (exit 139) on the features of
    a run whose images all went to one cluster."""
    out = tmp_path / "run"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "corekit.cli", "train", "cc", "--data", "digits", "--set",
            "data.subset=300", "--out", str(out), *QUICK]
    done = subprocess.run([*args, *(a for s in sets for a in ("--set", s))], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    no_traceback(done.stderr)
    with open(out / "assignments.csv", newline="") as fh:
        clusters = {row["cluster"] for row in csv.DictReader(fh)}
    assert len(clusters) == 1, "the recipe no longer collapses; find another that does"
    assert "all images in one cluster; try a lower learning rate" in done.stderr
    page = (out / "report" / "index.html").read_text()
    assert "All images in one cluster" in page
    assert "Embedding</b>: the features the clusters are assigned from do not vary" in page
    assert (out / "report.md").exists() and (out / "report" / "sizes.png").exists()


@pytest.mark.parametrize("x, why", [
    (np.ones((300, 10)), "do not vary"),
    (np.ones((300, 10)) + 1e-12 * np.random.default_rng(0).standard_normal((300, 10)),
     "do not vary"),
    (np.where(np.arange(300)[:, None] % 2, 1.0, np.nan) * np.ones((300, 4)), "NaN"),
    (np.repeat(np.eye(2, 5), 150, axis=0), "2 distinct point"),
], ids=["constant", "near-constant", "nan", "two-points"])
def test_pictures_the_embedding_cannot_draw_are_refused_before_it_runs(x, why):
    with pytest.raises(Undrawable, match=why):
        embed(x)


def test_an_embedding_of_huge_features_is_drawn():
    x = np.random.default_rng(0).standard_normal((60, 8)) * 1e200
    xy, method = embed(x)
    assert xy.shape == (60, 2) and np.isfinite(xy).all() and method == "t-SNE"


def test_the_report_command_says_a_run_collapsed(run, capsys):
    with open(run / "assignments.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(run / "assignments.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "cluster": "3"} for row in rows)
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err
    assert "deepclust: warning: all images in one cluster; try a lower learning rate, e.g. " \
           "--set train.optimizer.lr=" in err and "or more epochs (this run: 1)" in err


# --- report, predict and export: read-only folders and an --out of the wrong kind -----------


@contextlib.contextmanager
def read_only(folder):
    """``folder`` and all in it read-only: by the mode bits for a user; for root, whom the mode
    bits do not stop, by a read-only bind mount (else the test is skipped)."""
    if os.geteuid() != 0:
        paths = [folder, *folder.rglob("*")]
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p in reversed(paths):
                p.chmod(modes[p])
        return
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("running as root without the right to mount: no read-only folder")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("command, advice", [
    (["report"], "copy the run folder"),
    (["predict", "--data", "digits"], "give --out a file"),
    (["export"], "give --out a folder"),
], ids=["report", "predict", "export"])
def test_a_read_only_run_folder_is_exit_2(run, capsys, command, advice):
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with read_only(run):
        assert main([command[0], str(run), *command[1:]]) == 2
    err = capsys.readouterr().err
    no_traceback(err)
    assert f"deepclust: error: {run}" in err and "cannot be written" in err and advice in err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


@pytest.mark.parametrize("command", [["predict", "--data", "digits", "--out",
                                      "/proc/deepclust.csv"],
                                     ["export", "--out", "/proc/deepclust-export"]],
                         ids=["predict", "export"])
def test_an_out_that_cannot_be_written_is_exit_2(trained, capsys, command):
    assert main([command[0], str(trained), *command[1:]]) == 2
    err = capsys.readouterr().err
    no_traceback(err)
    assert "/proc/deepclust" in err and "cannot be written" in err and "--out" in err


def test_an_out_of_the_wrong_kind_is_exit_2(trained, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "folder").mkdir()
    cases = [
        (["predict", "--data", "digits", "--out", str(tmp_path / "folder")],
         f"--out {tmp_path / 'folder'} is a folder, not a file; give --out the name of a "
         "new CSV file"),
        (["predict", "--data", "digits", "--out", str(tmp_path / "file" / "p.csv")],
         f"{tmp_path / 'file'} is a file, not a folder"),
        (["export", "--out", str(tmp_path / "file")],
         f"--out {tmp_path / 'file'} is a file, not a folder; export writes a folder"),
        (["export", "--out", str(tmp_path / "file" / "sub")],
         f"{tmp_path / 'file'} is a file, not a folder"),
    ]
    for command, message in cases:
        assert main([command[0], str(trained), *command[1:]]) == 2, command
        err = capsys.readouterr().err
        no_traceback(err)
        assert message in err, (command, err)
    assert (tmp_path / "file").read_text() == "mine"
    assert list((tmp_path / "folder").iterdir()) == []


# --- torn and corrupt run files -------------------------------------------------------------


def test_a_torn_last_line_of_metrics_jsonl_is_skipped_with_a_warning(run, capsys):
    records = read_metrics(run)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"stage": "main", "epoch": 2, "lo')  # what kill -9 during a write leaves
    with pytest.warns(UserWarning, match=r"metrics.jsonl: skipped line 2 \(not a JSON record"):
        assert read_metrics(run) == records
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "not in the report" not in out
    assert "1 epoch record(s) in metrics.jsonl" in (run / "report.md").read_text()


def test_a_record_written_after_a_torn_line_is_kept(tmp_path):
    """A run resumed after a kill during a write: its next record is a line of its own."""
    (tmp_path / "metrics.jsonl").write_text('{"stage": "main", "epoch": 1}\n{"stage": "ma')
    with pytest.warns(UserWarning, match="skipped line 2"):
        MetricsLog(tmp_path).write({"stage": "main", "epoch": 2}, step=2)
        assert read_metrics(tmp_path) == [{"stage": "main", "epoch": 1},
                                           {"stage": "main", "epoch": 2}]


@pytest.mark.parametrize("name", ["final.json", "run.json"])
def test_a_corrupt_run_json_file_is_named_in_the_report(run, capsys, name):
    (run / name).write_text('{"nmi": 0.31, "rec')
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    section = "Final metrics" if name == "final.json" else "What ran"
    assert f"not in the report: {section}: RUN/{name} cannot be read (not valid JSON" in out
    assert f"{name} cannot be read" in (run / "report.md").read_text()
    for command in (["predict", "--data", "digits", "--out", str(run / "p.csv")],
                    ["export", "--out", str(run / "exported")]):
        assert main([command[0], str(run), *command[1:]]) == 0  # neither reads it


def test_a_corrupt_local_json_is_exit_2(tmp_path, capsys):
    folder = tmp_path / "images"
    from corekit.testing import write_digits_folder

    write_digits_folder(folder, range(60))
    out = tmp_path / "run"
    assert main(["train", "simclr-kmeans", "--data", f"imagefolder:{folder}", "--out", str(out),
                 *QUICK]) == 0
    (out / "local.json").write_text("{not json")
    for command in (["predict", "--data", "digits"], ["export"]):
        assert main([command[0], str(out), *command[1:]]) == 2
        err = capsys.readouterr().err
        no_traceback(err)
        assert f"{out / 'local.json'} cannot be read (not valid JSON" in err


@pytest.mark.parametrize("command", [["predict", "--data", "digits"], ["export"], ["report"]])
def test_a_recipe_that_does_not_fit_the_saved_networks_says_so(run, capsys, command):
    recipe = (run / "recipe.toml").read_text()
    (run / "recipe.toml").write_text(recipe.replace("out_dim = 128", "out_dim = 64", 1))
    code = main([command[0], str(run), *command[1:]])
    captured = capsys.readouterr()
    no_traceback(captured.err)
    said, shown = (captured.err, run) if command[0] != "report" else (captured.out, "RUN")
    assert f"was trained with another network than {shown}/recipe.toml describes: " \
           "heads.instance: heads.instance.2.bias is (128,) in the checkpoint, (64,) here" in said
    assert "Put back the run's recipe.toml as training wrote it" in said
    assert code == (0 if command[0] == "report" else 2)


# --- new-plugin -----------------------------------------------------------------------------


def test_new_plugin_with_a_300_character_name_is_exit_2(tmp_path, capsys):
    assert main(["new-plugin", "a" * 300, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    no_traceback(err)
    assert "is 300 characters long; use at most" in err
    assert list(tmp_path.iterdir()) == []


def test_new_plugin_into_a_file_is_exit_2(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    for where in (tmp_path / "file", tmp_path / "file" / "sub"):
        assert main(["new-plugin", "labx", "--dir", str(where)]) == 2
        err = capsys.readouterr().err
        no_traceback(err)
        assert f"{tmp_path / 'file'} is a file, not a folder" in err and "--dir" in err
    assert (tmp_path / "file").read_text() == "mine"


def test_new_plugin_that_cannot_be_written_is_exit_2_and_leaves_nothing(tmp_path, capsys):
    where = tmp_path / ("d" * 250)
    while len(str(where)) < 4200:
        where = where / ("f" * 250)
    assert main(["new-plugin", "labx", "--dir", str(where)]) == 2
    err = capsys.readouterr().err
    no_traceback(err)
    assert "cannot be written (its name or path is too long)" in err and "--dir" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, why", [("{broken", "cannot be read (not valid JSON"),
                                       ('{"index": 0}', "holds no stage plan (KeyError")])
def test_a_corrupt_plan_json_on_resume_is_exit_2(run, capsys, text, why):
    """--resume reads the interrupted stage's plan.json: one cut short or edited is exit 2
    naming it (it was a JSONDecodeError or KeyError traceback), and the run is left as it
    was."""
    stage = run / "stages" / "main"
    assert (stage / "checkpoint.pt").exists()
    (stage / "outputs.pt").unlink()  # as if stopped before the stage's end
    (stage / "plan.json").write_text(text)
    checkpoint = (stage / "checkpoint.pt").read_bytes()
    assert main(["train", "cc", "--data", "digits", "--set", "data.subset=200", "--out",
                 str(run), *QUICK, "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{stage / 'plan.json'} {why}" in err and "Traceback" not in err
    assert (stage / "checkpoint.pt").read_bytes() == checkpoint
