"""`pip install ./plugins/cidfd` works: a wheel builds from the folder with the package, its
recipes and the entry point, and pip's resolver (dry run, no index) accepts it."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

FOLDER = Path(__file__).resolve().parents[1]


def test_wheel_holds_the_package_recipes_and_entry_point(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp_path), str(FOLDER)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("deepclust_plugin_cidfd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for path in ("deepclust_cidfd/plugin.py", "deepclust_cidfd/losses.py",
                 "deepclust_cidfd/data.py", "deepclust_cidfd/recipes/cidfd.toml",
                 "deepclust_cidfd/recipes/idfd.toml"):
        assert path in names
    assert not any(name.startswith("tests/") for name in names)
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[deepclust]" in text and "cidfd = deepclust_cidfd.plugin" in text


def test_pip_install_resolves_without_an_index(tmp_path):
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index",
                    "--no-build-isolation", "--report", str(report), str(FOLDER)],
                   check=True, capture_output=True)
    installs = {item["metadata"]["name"]: item
                for item in json.loads(report.read_text())["install"]}
    assert "deepclust-plugin-cidfd" in installs
    assert installs["deepclust-plugin-cidfd"]["metadata"]["requires_dist"] == ["deepclust>=0.1"]
