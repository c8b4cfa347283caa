"""A run folder has one writer and removes only its runs' own files (issue 28, part 5): a second
command into a held ``--out`` is refused naming the first, a dead holder's lock is taken over,
``--overwrite`` leaves the user's files, a killed checkpoint write's temp file goes at the next
open, and a command that wrote nothing leaves nothing behind."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from corekit.cli import main
from corekit.errors import UserError
from corekit.run_folder import LOCK_FILE, MANIFEST_FILE, RunFolder, holds_run

QUICK = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--no-progress"]
HOLD = """
import sys
from pathlib import Path
from corekit.run_folder import RunFolder
folder = RunFolder.open(Path(sys.argv[1]), "deepclust train cc --data digits")
(folder.path / "metrics.jsonl").write_text("{}")
print("held", flush=True)
if sys.argv[2] == "wait":
    sys.stdin.read()
    folder.close()
else:
    import os
    os._exit(1)  # killed: the lock and the open manifest stay behind
"""


def hold(out: Path, how: str = "wait") -> subprocess.Popen[str]:
    """Another process holding ``out`` (until its stdin closes, or killed at once)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), how], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def a_run(folder: Path) -> None:
    """What a run writes, through a RunFolder."""
    with RunFolder.open(folder, "deepclust train cc"):
        (folder / "stages" / "main").mkdir(parents=True)
        (folder / "stages" / "main" / "checkpoint.pt").write_bytes(b"ckpt")
        (folder / "report").mkdir()
        (folder / "report" / "index.html").write_text("<html>")
        for name in ("recipe.toml", "final.json", "metrics.jsonl"):
            (folder / name).write_text(name)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_second_train_into_a_held_out_names_the_first(tmp_path, capsys):
    out = tmp_path / "run"
    first = hold(out)
    try:
        assert main(["train", "simclr-kmeans", "--out", str(out), *QUICK]) == 2
        err = capsys.readouterr().err
        assert f"is in use by deepclust (pid {first.pid} on {socket.gethostname()}" in err
        assert "`deepclust train cc --data digits`" in err and "choose another --out" in err
        with pytest.raises(UserError, match=f"pid {first.pid}"):
            RunFolder.open(out, "deepclust train cc")
        assert (out / "metrics.jsonl").read_text() == "{}"  # the first run's file, untouched
    finally:
        first.communicate("")
    assert not (out / LOCK_FILE).exists()
    assert json.loads((out / MANIFEST_FILE).read_text()) == {"files": ["metrics.jsonl"]}


def test_a_lock_of_a_dead_process_is_taken_over(tmp_path):
    pid = dead_pid()
    (tmp_path / LOCK_FILE).write_text(json.dumps(
        {"pid": pid, "host": socket.gethostname(), "started": "earlier", "command": None}))
    with RunFolder.open(tmp_path, "deepclust train cc") as folder:
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert f"took over the lock of deepclust (pid {pid}" in folder.notes[0]
    assert not (tmp_path / LOCK_FILE).exists()
    (tmp_path / LOCK_FILE).write_text(json.dumps(
        {"pid": pid, "host": "elsewhere", "started": "earlier", "command": None}))
    with pytest.raises(UserError, match=f"in use by deepclust .pid {pid} on elsewhere"):
        RunFolder.open(tmp_path, None)  # a process on another host cannot be checked


def test_a_killed_run_is_settled_and_its_files_listed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    hold(out, how="kill").wait()
    with RunFolder.open(out, None) as folder:
        assert "ended without closing" in folder.notes[-1]
        assert folder.listed == {"metrics.jsonl"}
        assert folder.remove_run_files() == [out / "metrics.jsonl"]
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_overwrite_removes_the_run_files_and_nothing_of_the_users(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "data.csv").write_text("there before the run")
    a_run(out)
    (out / "report" / "notes.md").write_text("my notes")  # after the run: never the run's
    (out / "later.txt").write_text("added later")
    assert holds_run(out)
    with RunFolder.open(out, None) as folder:
        removed = folder.remove_run_files()
        assert {p.relative_to(out).as_posix() for p in removed} == {
            "recipe.toml", "final.json", "metrics.jsonl", "stages/main/checkpoint.pt",
            "report/index.html"}
        (out / "final.json").write_text("the new run's")
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == [MANIFEST_FILE, "data.csv", "final.json", "later.txt", "report/notes.md"]
    assert json.loads((out / MANIFEST_FILE).read_text()) == {"files": ["final.json"]}


def test_overwrite_of_files_no_run_listed_is_refused(tmp_path):
    """An older deepclust's run (or the user's recipe.toml) is not guessed at."""
    (tmp_path / "recipe.toml").write_text("# my recipe")
    (tmp_path / "stages" / "main").mkdir(parents=True)
    (tmp_path / "stages" / "main" / "checkpoint.pt").write_bytes(b"old")
    with RunFolder.open(tmp_path, None) as folder, \
            pytest.raises(UserError, match=r"no deepclust run listed as its own \(recipe.toml, "
                                           r"stages/main/checkpoint.pt\).*choose another --out"):
        folder.remove_run_files()
    assert (tmp_path / "recipe.toml").read_text() == "# my recipe"
    assert (tmp_path / "stages" / "main" / "checkpoint.pt").exists()


def test_overwrite_resolves_the_recipe_before_removing_anything(tmp_path, capsys):
    """``train recipe.toml --out . --overwrite`` once deleted the recipe before reading it."""
    assert main(["show", "simclr-kmeans"]) == 0
    (tmp_path / "recipe.toml").write_text("# mine\n" + capsys.readouterr().out)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.md").write_text("my notes")
    assert main(["train", str(tmp_path / "recipe.toml"), "--data", "mnsit-is-never-loaded",
                 "--out", str(tmp_path), "--overwrite", *QUICK]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert (tmp_path / "recipe.toml").read_text().startswith("# mine")
    assert (tmp_path / "report" / "notes.md").read_text() == "my notes"


def test_a_killed_checkpoint_writes_temp_file_goes_at_the_next_open(tmp_path):
    stage = tmp_path / "stages" / "main"
    stage.mkdir(parents=True)
    (stage / ".checkpoint.pt.k3j9x_2a.tmp").write_bytes(b"half")
    (stage / ".outputs.pt.abcdefgh.tmp").write_bytes(b"half")
    (tmp_path / ".notes.tmp").write_text("not a checkpoint's")
    with RunFolder.open(tmp_path, None) as folder:
        assert "removed 2 temp file(s)" in folder.notes[0]
    assert sorted(p.name for p in stage.iterdir()) == []
    assert (tmp_path / ".notes.tmp").exists()


def test_a_command_that_wrote_nothing_leaves_nothing(tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(KeyboardInterrupt), RunFolder.open(out, None):
        raise KeyboardInterrupt
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "a.txt").write_text("a")
    with RunFolder.open(existing, None):
        pass
    assert sorted(p.name for p in existing.iterdir()) == ["a.txt"]
    assert not holds_run(existing)


def test_a_failed_resume_into_an_empty_folder_does_not_block_a_fresh_start(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "simclr-kmeans", "--out", str(out), "--resume", *QUICK]) == 2
    assert "start without --resume" in capsys.readouterr().err
    assert not holds_run(out)
    assert main(["train", "simclr-kmeans", "--out", str(out), *QUICK]) == 0


def test_train_overwrite_keeps_what_the_user_added_to_the_run(tmp_path, capsys):
    from corekit import recipe as rc
    from corekit.testing import tiny_recipe

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(rc.to_toml(tiny_recipe()))
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--no-progress"]) == 0
    (out / "report" / "notes.md").write_text("my notes")
    first = (out / "stages" / "main" / "checkpoint.pt").stat().st_mtime_ns
    assert main(["train", str(recipe), "--out", str(out), "--overwrite", "--no-progress"]) == 0
    assert (out / "report" / "notes.md").read_text() == "my notes"
    assert (out / "stages" / "main" / "checkpoint.pt").stat().st_mtime_ns != first
    assert not (out / LOCK_FILE).exists()


def test_train_overwrite_into_a_folder_with_the_users_recipe_is_refused(tmp_path, capsys):
    from corekit import recipe as rc
    from corekit.testing import tiny_recipe

    mine = rc.to_toml(tiny_recipe())
    (tmp_path / "recipe.toml").write_text(mine)
    assert main(["train", str(tmp_path / "recipe.toml"), "--out", str(tmp_path), "--overwrite",
                 "--no-progress"]) == 2
    assert "recipe.toml" in capsys.readouterr().err
    assert (tmp_path / "recipe.toml").read_text() == mine
    assert not (tmp_path / "stages").exists() and not (tmp_path / LOCK_FILE).exists()


def test_sigterm_stops_a_run_like_ctrl_c_and_lets_go_of_the_folder(tmp_path, capsys,
                                                                     monkeypatch):
    import signal
    import time

    from corekit import recipe as rc
    from corekit.testing import tiny_recipe

    def terminated_train(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler interrupts this
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr("corekit.runner.train", terminated_train)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(rc.to_toml(tiny_recipe()))
    before = signal.getsignal(signal.SIGTERM)
    assert main(["train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 143
    assert "deepclust: terminated; no checkpoint was written yet" in capsys.readouterr().err
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    assert signal.getsignal(signal.SIGTERM) == before
