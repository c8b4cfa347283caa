"""registry.toml agrees with what each installed plugin actually registers."""

import tomllib
from pathlib import Path

import pytest

from corekit.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = tomllib.loads((ROOT / "registry.toml").read_text())["plugin"]
PLUGINS = load_plugins()


def test_catalogue_shape():
    for entry in CATALOGUE:
        assert set(entry) >= {"name", "distribution", "path", "paper", "status"}, entry
        assert entry["distribution"] == f"deepclust-plugin-{entry['name']}"


@pytest.mark.parametrize("entry", [e for e in CATALOGUE if e["status"] == "available"],
                         ids=lambda e: e["name"])
def test_available_plugin_matches_what_it_registers(entry):
    assert (ROOT / entry["path"] / "pyproject.toml").exists()
    info = PLUGINS.plugin(entry["name"])
    if info is None:
        pytest.skip(f"{entry['distribution']} is not installed here")
    assert info.status == "loaded", info.error
    registered = {kind: sorted(names) for kind, names in info.components.items()
                  if kind != "recipe"}
    assert registered == {k: sorted(v) for k, v in entry["components"].items()}
    assert sorted(info.components.get("recipe", [])) == sorted(entry["recipes"])


def test_every_plugin_folder_is_catalogued():
    folders = {p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists()}
    assert folders == {e["name"] for e in CATALOGUE if e["status"] == "available"}
