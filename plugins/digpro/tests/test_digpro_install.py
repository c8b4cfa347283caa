"""`pip install ./plugins/digpro` pulls the ProPos base plugin from its sibling folder."""

from pathlib import Path

from corekit.testing import pip_install_plan

PLUGINS = Path(__file__).resolve().parents[2]  # plugins/digpro/tests -> plugins


def test_pip_install_digpro_pulls_propos_from_the_sibling_folder():
    """pip's own resolver (dry run, no index) installs propos from ``plugins/propos``."""
    plan = pip_install_plan(PLUGINS / "digpro")
    assert plan["deepclust-plugin-propos"]["download_info"]["url"] == (PLUGINS / "propos").as_uri()
    requires = plan["deepclust-plugin-digpro"]["metadata"]["requires_dist"]
    assert "deepclust>=0.1" in requires
    assert f"deepclust-plugin-propos @ {(PLUGINS / 'propos').as_uri()}" in requires
