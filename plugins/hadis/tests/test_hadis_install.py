"""`pip install ./plugins/hadis` pulls the ProPos base plugin from its sibling folder."""

from pathlib import Path

from corekit.testing import pip_install_plan

PLUGINS = Path(__file__).resolve().parents[2]  # plugins/hadis/tests -> plugins


def test_pip_install_hadis_pulls_propos_from_the_sibling_folder():
    """pip's own resolver (dry run, no index) installs propos from ``plugins/propos``."""
    plan = pip_install_plan(PLUGINS / "hadis")
    assert plan["deepclust-plugin-propos"]["download_info"]["url"] == (PLUGINS / "propos").as_uri()
    requires = plan["deepclust-plugin-hadis"]["metadata"]["requires_dist"]
    assert "deepclust>=0.1" in requires
    assert f"deepclust-plugin-propos @ {(PLUGINS / 'propos').as_uri()}" in requires
