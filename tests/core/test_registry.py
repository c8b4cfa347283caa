import re
import sys

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


# -- "module:attr" targets, imported on first use ---------------------------------------------

@pytest.fixture
def lazy_module(tmp_path, monkeypatch):
    """A module ``lazy_factories`` on sys.path, not imported; removed again afterwards."""
    (tmp_path / "lazy_factories.py").write_text(
        "class Loss:\n    '''A loss.'''\n\n    def __init__(self, scale=1.0):\n"
        "        self.scale = scale\n\n\nNOT_CALLABLE = 3\n")
    (tmp_path / "lazy_broken.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "lazy_factories"
    for name in ("lazy_factories", "lazy_broken"):
        sys.modules.pop(name, None)


def test_lazy_target_is_imported_on_first_build_not_at_registration(lazy_module):
    reg = Registry()
    entry = reg.register("loss", "scaled", f"{lazy_module}:Loss", plugin="lab", aliases=("s",))
    assert entry.is_lazy and lazy_module not in sys.modules
    assert reg.names("loss") == ["s", "scaled"] and reg.has("loss", "lab.s")
    assert lazy_module not in sys.modules
    built = reg.build("loss", "s", scale=2.0)
    assert built.scale == 2.0 and not entry.is_lazy
    assert reg.get("loss", "scaled").obj is sys.modules[lazy_module].Loss


@pytest.mark.parametrize(("target", "message"), [
    ("lazy_factories.Loss", "is not 'package.module:attr'"),
    ("lazy_factories:1st", "is not 'package.module:attr'"),
    ("no_such_package_anywhere.losses:Loss", "no module named 'no_such_package_anywhere.losses'"),
    ("lazy_factories.sub:Loss", "no module named 'lazy_factories.sub'"),
])
def test_malformed_or_missing_target_fails_registration_naming_the_plugin(lazy_module, target,
                                                                          message):
    with pytest.raises(ComponentError, match=re.escape(f"lab: loss 'x': target {target!r}")) \
            as err:
        Registry().register("loss", "x", target, plugin="lab")
    assert message in str(err.value)
    assert lazy_module not in sys.modules


@pytest.mark.parametrize(("target", "why"), [
    ("lazy_broken:Loss", "cannot be imported: RuntimeError: broken at import"),
    ("lazy_factories:Missing", "cannot be imported: AttributeError"),
    ("lazy_factories:NOT_CALLABLE", "is not callable: 3"),
])
def test_target_that_cannot_be_loaded_is_a_component_error_naming_plugin_and_target(
        lazy_module, target, why):
    reg = Registry()
    reg.register("loss", "x", target, plugin="lab")
    with pytest.raises(ComponentError) as err:
        reg.build("loss", "x")
    assert str(err.value).startswith(f"plugin 'lab': loss 'x' (target {target!r}) {why}")
