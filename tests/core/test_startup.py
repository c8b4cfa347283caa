"""Issue #23, start-up: the listing commands import no torch, kornia or timm (plugins register
``"module:attr"`` targets, imported when a component is first built or described), and a
target that cannot be imported is a clear error naming the plugin and the target, exit 2.

Each command runs in a fresh interpreter, so that what the test process imported does not
count; a plugin of broken targets is installed for it as a ``*.dist-info`` folder on
PYTHONPATH (an entry point in the ``deepclust`` group, like any installed plugin)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "kornia", "timm")
RUN = f"""
import sys
from corekit.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
print("heavy:" + ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""

BROKEN_PLUGIN = '''
from corekit import hookimpl


@hookimpl
def register_losses(register):
    register("unimportable_loss", "badplug_mod.needs_missing_dep:Loss")
    register("missing_attr_loss", "badplug_mod.empty:NoSuchLoss")
'''
MISSING_MODULE_PLUGIN = '''
from corekit import hookimpl


@hookimpl
def register_losses(register):
    register("typo_loss", "typoplug_mod.losess:Loss")
'''


def deepclust(*argv: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``deepclust ARGV`` in a fresh interpreter, ``path`` (if any) first on PYTHONPATH; its
    stderr ends with the line ``heavy:`` + the modules of HEAVY it imported."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "DEEPCLUST_PLUGINS", "DEEPCLUST_DISABLE"))}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", RUN, *argv], capture_output=True, text=True,
                          env=env, timeout=120)


def heavy_imports(done: subprocess.CompletedProcess[str]) -> str:
    return done.stderr.rstrip().rsplit("heavy:", 1)[-1]


def install_plugin(root: Path, name: str, plugin_py: str, modules: dict[str, str]) -> Path:
    """A plugin ``name`` (package ``NAME_mod``) installed in ``root`` as a dist-info folder
    with its entry point; ``modules`` are the package's other files. Returns ``root``."""
    package = root / f"{name}_mod"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(plugin_py)
    for module, text in modules.items():
        (package / f"{module}.py").write_text(text)
    info = root / f"deepclust_plugin_{name}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: deepclust-plugin-{name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[deepclust]\n{name} = {name}_mod.plugin\n")
    return root


@pytest.fixture(scope="module")
def broken_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``badplug``: one target whose module needs a package that is not installed, one whose
    attribute does not exist; ``typoplug``: a target whose module path is misspelt."""
    root = tmp_path_factory.mktemp("site")
    install_plugin(root, "badplug", BROKEN_PLUGIN,
                   {"needs_missing_dep": "import surely_not_installed_dependency\n",
                    "empty": '"""Nothing here."""\n'})
    return install_plugin(root, "typoplug", MISSING_MODULE_PLUGIN, {})


@pytest.mark.parametrize("argv", [["plugins"], ["plugins", "--json"], ["components"],
                                  ["components", "loss"], ["recipes"],
                                  ["show", "simclr-kmeans", "--data", "digits"]],
                         ids=" ".join)
def test_listing_command_imports_no_torch_kornia_or_timm(argv):
    done = deepclust(*argv)
    assert done.returncode == 0, done.stderr
    assert heavy_imports(done) == "", f"deepclust {' '.join(argv)} imported {heavy_imports(done)}"


def test_describing_one_component_imports_it():
    """The other side of the lazy registration: ``components KIND NAME`` builds the component
    (to show its needs), so it does import torch, and says what it needs."""
    done = deepclust("components", "loss", "nt_xent")
    assert done.returncode == 0, done.stderr
    assert "needs: online:proj (embedding); 2 views" in done.stdout
    assert "torch" in heavy_imports(done)


def test_listings_still_work_with_a_plugin_of_broken_targets(broken_plugin):
    """Listing imports no target, so a broken one neither fails its plugin nor the listing;
    the plugin with a misspelt module path is reported failed, naming plugin and target."""
    listing = deepclust("components", "loss", path=broken_plugin)
    assert listing.returncode == 0, listing.stderr
    assert "badplug.unimportable_loss" in listing.stdout
    plugins = deepclust("plugins", path=broken_plugin).stdout
    assert "badplug      0.1.0    loaded" in plugins
    assert "typoplug     0.1.0    failed" in plugins
    assert ("typoplug: loss 'typo_loss': target 'typoplug_mod.losess:Loss': no module named "
            "'typoplug_mod.losess'") in plugins


@pytest.mark.parametrize(("name", "why"), [
    ("unimportable_loss", "ModuleNotFoundError: No module named "
                          "'surely_not_installed_dependency'"),
    ("missing_attr_loss", "AttributeError: module 'badplug_mod.empty' has no attribute "
                          "'NoSuchLoss'"),
])
def test_target_that_fails_to_import_is_exit_2_naming_plugin_and_target(broken_plugin, name,
                                                                         why):
    done = deepclust("components", "loss", name, path=broken_plugin)
    assert done.returncode == 2
    assert f"deepclust: error: plugin 'badplug': loss {name!r} (target 'badplug_mod." in done.stderr
    assert f"cannot be imported: {why}" in done.stderr
    assert "Traceback" not in done.stderr


def test_component_of_a_plugin_failed_on_a_bad_module_path_is_exit_2_naming_the_plugin(
        broken_plugin):
    done = deepclust("components", "loss", "typo_loss", path=broken_plugin)
    assert done.returncode == 2
    assert "deepclust: error: unknown loss 'typo_loss'" in done.stderr
    assert "plugin(s) typoplug failed to load" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_closed_pipe_ends_a_listing_quietly():
    """``deepclust recipes | head -1``: the reader leaving is not an error."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "corekit.cli", "recipes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
