"""``deepclust new-plugin``: what it writes, what it refuses, that the plugin it writes passes
its own tests, installs, trains next to other papers' components and uninstalls, and that
every command of docs/tutorial-plugin.md runs.

The tutorial test puts a plugin into this environment (``pip install -e``, offline) and takes
it out again in a ``finally``. Its name ends in the process id, so that concurrent runs, and a
plugin the user installed under the tutorial's name, are left alone.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from corekit.cli import main
from corekit.scaffold import EXTRAS, new_plugin
from corekit.testing import assert_above_chance

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial-plugin.md"
BIN = Path(sys.executable).parent
FAST = ("--no-progress --set data.subset=256 --set train.epochs=1 --set train.steps_per_epoch=2 "
        "--set train.batch_size=64")
"""What the tests append to every ``deepclust train``: 2 steps on 256 digits, one epoch."""


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _env() -> dict[str, str]:
    """This environment's ``deepclust``, ``pip`` and ``pytest`` first on PATH, no package
    index, one thread, no plugin selection inherited from the calling test."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_", "DEEPCLUST_PLUGINS", "DEEPCLUST_DISABLE"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    return env


def _bash(script: str, cwd: Path, timeout: float = 300) -> str:
    """Run ``script`` with ``bash -euo pipefail`` in ``cwd``; ``deepclust train`` gets
    :data:`FAST` appended. Returns stdout and stderr; a failure shows both."""
    prelude = ('deepclust() { if [ "${1:-}" = train ]; then command deepclust "$@" '
               f'{FAST}; else command deepclust "$@"; fi; }}\n')
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", prelude + script], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=timeout)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"exit {done.returncode} from:\n{script}\n--- output:\n{out}"
    return out


def _remove_stale(prefix: str) -> None:
    """Uninstall the plugins that a test of this file installed (``prefix`` and a process id)
    and whose source folder is gone: left by a run killed before its ``finally``, they would
    be listed as failed plugins."""
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
        if (re.fullmatch(rf"{prefix}\d+", name) and url.startswith("file://")
                and not Path(url[7:]).exists()):
            _uninstall(name)


def _uninstall(distribution: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", distribution],
                   env=_env(), capture_output=True, check=False)


def _leftovers(distribution: str) -> list[str]:
    """What an editable install of ``distribution`` put into site-packages (its dist-info,
    ``.pth`` and finder): nothing once it is uninstalled."""
    site = Path(sysconfig.get_paths()["purelib"])
    key = re.compile(re.escape(distribution.replace("-", "_")) + r"[_.]")
    return sorted(p.name for p in site.iterdir() if key.search(p.name.replace("-", "_")))


def _listing(plugin: str) -> list[str]:
    """The lines ``deepclust plugins`` (a fresh process) prints for ``plugin``."""
    out = _bash("deepclust plugins", Path.cwd())
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.split()[:1] == [plugin]), None)
    if start is None:
        return []
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" "):
            break
        block.append(line.strip())
    return block


# -- what new-plugin writes and refuses -----------------------------------------------------

def test_new_plugin_writes_an_installable_plugin_with_every_extra(tmp_path, capsys):
    assert main(["new-plugin", "labx", "--dir", str(tmp_path),
                 "--with", "head,state", "--with", "clusterer"]) == 0
    root = tmp_path / "deepclust-plugin-labx"
    assert str(root) in capsys.readouterr().out
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted([
        "README.md", "pyproject.toml", "deepclust_labx/__init__.py",
        "deepclust_labx/plugin.py", "deepclust_labx/losses.py", "deepclust_labx/heads.py",
        "deepclust_labx/state.py", "deepclust_labx/clusterers.py",
        "deepclust_labx/recipes/labx.toml", "tests/conftest.py", "tests/test_labx.py",
        "tests/test_labx_head.py", "tests/test_labx_state.py", "tests/test_labx_clusterer.py",
    ])
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.deepclust]\nlabx = "deepclust_labx.plugin"' in pyproject
    assert 'deepclust_labx = ["recipes/*.toml"]' in pyproject
    assert 'build-backend = "setuptools.build_meta"' in pyproject
    plugin = (root / "deepclust_labx" / "plugin.py").read_text()
    for hook, registered in [("register_losses", "labx_loss"), ("register_heads", "labx_head"),
                             ("register_state_types", "labx_state"),
                             ("register_clusterers", "labx_clusterer")]:
        assert f"def {hook}(" in plugin and f'register("{registered}",' in plugin
    assert "register_recipe_dir(register, RECIPES)" in plugin
    assert '"deepclust_labx.losses:ScaledNTXent"' in plugin  # lazy: plugin.py imports no torch
    assert '"deepclust_labx.clusterers:CosineKMeans"' in plugin
    assert "from deepclust_labx" not in plugin
    recipe = (root / "deepclust_labx" / "recipes" / "labx.toml").read_text()
    assert 'extends = "simclr-kmeans"' in recipe
    for registered in ("labx_loss", "labx_head", "labx_state", "labx_clusterer"):
        assert f'type = "labx.{registered}"' in recipe
    readme = (root / "README.md").read_text()
    for section in ("## Install", "## Test", "## Use"):
        assert section in readme
    assert "pip install --no-build-isolation -e ." in readme and "`labx_clusterer`" in readme


def test_new_plugin_without_extras_writes_only_the_loss(tmp_path):
    root = new_plugin("plain", tmp_path)
    package = root / "deepclust_plain"
    assert sorted(p.name for p in package.glob("*.py")) == ["__init__.py", "losses.py",
                                                            "plugin.py"]
    plugin = (package / "plugin.py").read_text()
    assert "register_losses" in plugin and "register_heads" not in plugin
    recipe = (package / "recipes" / "plain.toml").read_text()
    assert "[clusterer]" not in recipe and "[state." not in recipe
    assert sorted(p.name for p in (root / "tests").iterdir()) == ["conftest.py",
                                                                 "test_plain.py"]


def test_unknown_extra_is_exit_2_with_a_suggestion(tmp_path, capsys):
    assert main(["new-plugin", "labx", "--dir", str(tmp_path), "--with", "head,clusterr"]) == 2
    err = capsys.readouterr().err
    assert "--with 'clusterr'" in err and "did you mean 'clusterer'?" in err
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_refused_and_left_alone(tmp_path, capsys):
    root = tmp_path / "deepclust-plugin-labx"
    root.mkdir()
    (root / "mine.txt").write_text("keep me")
    assert main(["new-plugin", "labx", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in root.iterdir()] == ["mine.txt"]
    assert (root / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("name", ["MyLab", "2lab", "my-lab", "core"])
def test_bad_or_taken_names_are_exit_2(tmp_path, capsys, name):
    assert main(["new-plugin", name, "--dir", str(tmp_path)]) == 2
    assert f"deepclust: error: plugin name {name!r}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_scaffolded_plugin_tests_pass(tmp_path, monkeypatch):
    """The tests ``new-plugin --with head,state,clusterer`` writes pass on the plugin it writes
    (run by pytest in this process, the plugin importable from its folder)."""
    root = new_plugin("scaffoldcheck", tmp_path, list(EXTRAS))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.chdir(root)
    before = set(sys.modules)
    try:
        code = pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", str(root),
                            str(root / "tests")])
    finally:
        for module in set(sys.modules) - before:
            if module.startswith(("deepclust_scaffoldcheck", "test_scaffoldcheck", "conftest")):
                del sys.modules[module]
    assert code == 0, "the scaffolded plugin's own tests failed (output above)"


# -- installed for real: the tutorial, end to end ---------------------------------------------

def _assert_run_above_chance(run: Path) -> None:
    """The run's ``final.json`` scores are those of its ``assignments.csv`` (cluster and
    label per image; digits, K = 10) and above chance for those assignments
    (``corekit.testing.assert_above_chance``; chance NMI is about 0.11 on 256 digits)."""
    import csv

    import torch

    with open(run / "assignments.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = torch.tensor([int(row["label"]) for row in rows])
    clusters = torch.tensor([int(row["cluster"]) for row in rows])
    final = json.loads((run / "final.json").read_text())
    assert len(rows) == 256, (run, len(rows))
    assert_above_chance(final, [(labels, clusters, 10)])


def tutorial_blocks() -> list[str]:
    """The ```bash blocks of docs/tutorial-plugin.md, in order."""
    return re.findall(r"^```bash\n(.*?)^```", TUTORIAL.read_text(), flags=re.S | re.M)


def test_tutorial_has_the_steps_it_promises():
    commands = "\n".join(tutorial_blocks())
    for step in ("deepclust new-plugin mylab", "pip install --no-build-isolation -e",
                 "pytest", "deepclust check mylab --data digits",
                 "deepclust train mylab --data digits", 'type = "hadis.hsd"',
                 'extends = "digpro"', "deepclust train mix.toml --data digits",
                 "pip uninstall -y deepclust-plugin-mylab"):
        assert step in commands, step


def test_tutorial_commands_run_end_to_end(tmp_path):
    """Every ```bash block of the tutorial, in order, in an empty folder, with this
    environment's tools: this is also the end-to-end test of a plugin. ``new-plugin`` writes
    it into tmp_path, ``pip install`` puts it into this environment offline, ``pytest`` runs
    its tests, ``deepclust plugins`` (a fresh process) lists it, it trains alone and in a mix
    with HaDis's ``hsd`` and DigPro's dynamic grouping, ``pip uninstall`` removes it and
    ``deepclust plugins`` no longer lists it.

    ``deepclust train`` is shortened by FAST (one epoch of 2 steps on 256 digits); the plugin
    name ``mylab`` is made unique to this process so that concurrent runs and a user's own
    ``mylab`` are left alone. The blocks that use DigPro run when deepclust-plugin-digpro is
    installed; otherwise the test skips after the others."""
    if not _has("deepclust_hadis"):
        pytest.skip("the tutorial needs deepclust-plugin-hadis installed")
    _remove_stale("deepclust-plugin-mylab")
    name = f"mylab{os.getpid()}"
    outputs, left_out = [], []
    try:
        for block in tutorial_blocks():
            if "digpro" in block and not _has("deepclust_digpro"):
                left_out.append(block)
                continue
            outputs.append(_bash(block.replace("mylab", name), tmp_path))
    finally:
        _uninstall(f"deepclust-plugin-{name}")
    text = "\n".join(outputs)
    assert (tmp_path / f"deepclust-plugin-{name}" / f"deepclust_{name}" / "plugin.py").exists()
    assert re.search(rf"^{name} +0\.1\.0 +loaded +deepclust-plugin-{name}$", text, flags=re.M)
    assert f"    loss: {name}_loss" in text
    assert re.search(r"^\d+ passed in ", text, flags=re.M), text
    assert f"ok: recipe '{name}' composes (1 stage(s))" in text
    runs = {run.name.split("-digits-")[0]: run for run in (tmp_path / "runs").iterdir()}
    assert name in runs, sorted(runs)
    for run in runs.values():
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        assert math.isfinite(last["loss"]), (run, last)
        _assert_run_above_chance(run)
        assert name in json.loads((run / "versions.json").read_text())["plugins"]
    assert _listing(name) == []
    assert _leftovers(f"deepclust-plugin-{name}") == []
    if left_out:
        pytest.skip(f"ran every tutorial block but {len(left_out)} that need "
                    "deepclust-plugin-digpro, which is not installed")
    mix = json.loads((runs[f"{name}-mix"] / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(math.isfinite(mix[term]) for term in ("psa", "group", "hsd", "mine")), mix
