"""`pip install ./plugins/digpro` pulls the ProPos base plugin from its sibling folder."""

import json
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2]  # plugins/digpro/tests -> plugins


def test_pip_install_digpro_pulls_propos_from_the_sibling_folder(tmp_path):
    """pip's own resolver (dry run, no index) installs propos from ``plugins/propos``."""
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index",
         "--no-build-isolation", "--report", str(report), str(PLUGINS / "digpro")],
        check=True, capture_output=True,
    )
    installs = {
        item["metadata"]["name"]: item for item in json.loads(report.read_text())["install"]
    }
    assert installs["deepclust-plugin-propos"]["download_info"]["url"] == (
        (PLUGINS / "propos").as_uri()
    )
    requires = installs["deepclust-plugin-digpro"]["metadata"]["requires_dist"]
    assert "deepclust>=0.1" in requires
    assert f"deepclust-plugin-propos @ {(PLUGINS / 'propos').as_uri()}" in requires
