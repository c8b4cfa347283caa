import pytest

from corekit.errors import ComponentError
from corekit.registry import Registry


def factory(**kw):
    return kw


def test_lookup_by_name_alias_and_plugin_qualified():
    reg = Registry()
    reg.register("loss", "psa", factory, plugin="propos", aliases=("dsa",))
    assert reg.get("loss", "psa") is reg.get("loss", "dsa")
    assert reg.get("loss", "propos.psa").obj is factory
    assert reg.get("loss", "propos.dsa").name == "psa"
    assert [e.name for e in reg.entries("loss")] == ["psa"]


def test_duplicate_names_both_plugins():
    reg = Registry()
    reg.register("loss", "psa", factory, plugin="propos")
    with pytest.raises(ComponentError) as err:
        reg.register("loss", "psa", factory, plugin="copycat")
    assert "'propos'" in str(err.value) and "'copycat'" in str(err.value)


def test_unknown_name_suggests_neighbours():
    reg = Registry()
    reg.register("loss", "nt_xent", factory, plugin="core")
    with pytest.raises(ComponentError, match="did you mean 'nt_xent'"):
        reg.get("loss", "nt_xnet")
    with pytest.raises(ComponentError, match="core.nt_xent"):
        reg.get("loss", "other.nt_xent")


def test_prefix_family_passes_rest_of_name():
    reg = Registry()
    reg.register("backbone", "timm:", lambda name, **kw: (name, kw), plugin="core")
    built = reg.build("backbone", "timm:resnet10t", in_channels=3)
    assert built == ("resnet10t", {"in_channels": 3})


def test_dots_refused_in_names_and_unknown_kind():
    reg = Registry()
    with pytest.raises(ComponentError, match="may not contain"):
        reg.register("loss", "a.b", factory, plugin="x")
    with pytest.raises(ComponentError, match="unknown component kind"):
        reg.register("losss", "a", factory, plugin="x")
