import json
import os
import subprocess
import sys
import types

import pytest

from corekit import hookimpl
from corekit.cli import main
from corekit.errors import PluginError
from corekit.plugins import check_requirements, load_plugins
from corekit.testing import plugin_set
from tests.core import toy_plugin


def _module(name, **hooks):
    mod = types.ModuleType(name)
    for key, value in hooks.items():
        setattr(mod, key, value)
    return mod


def test_core_registers_through_the_hooks():
    plugins = load_plugins()
    core = plugins.plugin("core")
    assert core.status == "loaded"
    assert "nt_xent" in core.components["loss"]
    assert plugins.registry.get("loss", "nt_xent").plugin == "core"


def test_broken_plugin_is_reported_not_fatal():
    def register_losses(register):
        raise RuntimeError("boom in plugin")

    broken = _module("broken", register_losses=hookimpl(register_losses))
    plugins = load_plugins(extra=[("broken", broken), ("toy", toy_plugin)])
    info = plugins.plugin("broken")
    assert info.status == "failed" and "boom in plugin" in info.error
    assert plugins.plugin("toy").status == "loaded"
    assert "broken" in plugins.failure_note()


def test_unknown_hook_name_in_plugin_is_reported():
    def register_lossez(register):
        pass

    typo = _module("typo", register_lossez=hookimpl(register_lossez))
    info = load_plugins(extra=[("typo", typo)]).plugin("typo")
    assert info.status == "failed" and "register_lossez" in info.error


def test_duplicate_name_fails_the_second_plugin_whole():
    def register_losses(register):
        register("fresh_name", lambda: None)
        register("nt_xent", lambda: None)

    dup = _module("dup", register_losses=hookimpl(register_losses))
    plugins = load_plugins(extra=[("dup", dup)])
    info = plugins.plugin("dup")
    assert info.status == "failed"
    assert "'core'" in info.error and "'dup'" in info.error
    assert not plugins.registry.has("loss", "fresh_name")  # nothing half-registered


def test_allow_and_deny_environment(monkeypatch):
    monkeypatch.setenv("DEEPCLUST_DISABLE_PLUGINS", "toy")
    assert load_plugins(extra=[("toy", toy_plugin)]).plugin("toy").status == "disabled"
    monkeypatch.delenv("DEEPCLUST_DISABLE_PLUGINS")
    monkeypatch.setenv("DEEPCLUST_PLUGINS", "other")
    assert load_plugins(extra=[("toy", toy_plugin)]).plugin("toy").status == "disabled"
    plugins = plugin_set(toy_plugin)
    assert plugins.registry.has("loss", "momentum_centre")


def test_requirements_name_the_pip_command():
    plugins = plugin_set(toy_plugin, name="toy")
    with pytest.raises(PluginError, match="pip install deepclust-plugin-hadis"):
        check_requirements(["hadis"], plugins, "r")
    with pytest.raises(PluginError, match="needs toy>=9.0"):
        object.__setattr__(plugins.plugin("toy"), "version", "0.1.0")
        check_requirements(["toy>=9.0"], plugins, "r")
    check_requirements(["toy>=0.1"], plugins, "r")


def test_plugins_json(capsys):
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    core = next(p for p in listing if p["name"] == "core")
    assert core["status"] == "loaded" and "kmeans" in core["components"]["clusterer"]


def test_pip_installed_plugin_is_found_through_its_entry_point(tmp_path):
    """Scaffold a plugin, pip-install it (no network) into a folder, find its loss."""
    from corekit.scaffold import new_plugin

    root = new_plugin("mylab", tmp_path)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(root)],
        check=True, capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *sys.path])}
    out = subprocess.run([sys.executable, "-m", "corekit.cli", "components", "loss"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "mylab.mylab_loss" in out
    shown = subprocess.run([sys.executable, "-m", "corekit.cli", "show", "mylab"],
                           capture_output=True, text=True, env=env, check=True).stdout
    assert 'type = "mylab.mylab_loss"' in shown


def test_every_hook_registers_its_kind(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[losses.a]\ntype = "nt_xent"\n')

    def make(name):
        return lambda register: register(f"every_{name}", lambda **kw: kw)

    hooks = {
        "register_backbones": make("backbone"),
        "register_augmentations": make("augmentation"),
        "register_heads": make("head"),
        "register_losses": make("loss"),
        "register_pseudo_labelers": make("pseudo_labeler"),
        "register_clusterers": make("clusterer"),
        "register_recipes": lambda register: register("every_recipe", recipe),
    }
    module = _module("every", **{k: hookimpl(v) for k, v in hooks.items()})
    plugins = load_plugins(extra=[("every", module)])
    assert plugins.plugin("every").status == "loaded"
    for kind in ("backbone", "augmentation", "head", "loss", "pseudo_labeler", "clusterer",
                 "recipe"):
        assert plugins.registry.get(kind, f"every.every_{kind}").plugin == "every"


def test_plugin_set_with_several_modules_loads_them_all():
    other = _module("other", register_clusterers=hookimpl(
        lambda register: register("other_kmeans", lambda n_clusters: None)))
    plugins = plugin_set(toy_plugin, other)
    assert plugins.registry.has("loss", "momentum_centre")
    assert plugins.registry.has("clusterer", "other_kmeans")
