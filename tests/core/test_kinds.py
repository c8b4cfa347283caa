"""The table of component kinds (``corekit/kinds.py``) is the one place a kind is described:
the registry, the plugin hooks, the contracts, the builder's context and ``describe`` read it.
What cannot be read off it is held to it here: the hookspecs, the hook table of
docs/plugins.md and the protocols ``corekit`` exports."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest
import torch

import corekit
from corekit import contracts, hookspecs
from corekit.builder import build_component
from corekit.kinds import TABLE, Kind
from corekit.testing import plugin_set

ROOT = Path(__file__).resolve().parents[2]
HOOKSPECS = {name: fn for name, fn in vars(hookspecs).items()
             if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")}
DOC_ROW = re.compile(r"^\| `(register_\w+)` \|(.*)\|$", re.M)


def names(text: str) -> set[str]:
    """The identifiers in ``text``."""
    return set(re.findall(r"\w+", text))


def context_missing_from(kind: Kind, text: str) -> list[str]:
    return [arg for arg in kind.context if arg not in names(text)]


def test_each_kind_is_one_row_with_its_own_name_and_hook():
    assert len({kind.name for kind in TABLE}) == len(TABLE)
    assert len({kind.hook for kind in TABLE}) == len(TABLE)


def test_every_kind_has_a_hookspec_and_every_hookspec_is_a_kind():
    assert sorted(HOOKSPECS) == sorted(kind.hook for kind in TABLE)


@pytest.mark.parametrize("kind", TABLE, ids=lambda kind: kind.name)
def test_the_hookspec_takes_register_and_names_the_context(kind):
    spec = HOOKSPECS[kind.hook]
    assert list(inspect.signature(spec).parameters) == ["register"]
    missing = context_missing_from(kind, spec.__doc__ or "")
    assert not missing, f"{kind.hook}'s docstring should name the context {missing}"


def test_the_docs_hook_table_has_one_row_per_kind_in_order():
    rows = DOC_ROW.findall((ROOT / "docs" / "plugins.md").read_text())
    assert [hook for hook, _ in rows] == [kind.hook for kind in TABLE]
    for kind, (_, contract) in zip(TABLE, rows, strict=True):
        missing = context_missing_from(kind, contract)
        assert not missing, f"docs/plugins.md, {kind.hook}: name the context {missing}"


def is_protocol(obj: object) -> bool:
    """A class declared ``class Name(Protocol)``."""
    return isinstance(obj, type) and typing.Protocol in obj.__bases__


@pytest.mark.parametrize("kind", [k for k in TABLE if k.contract], ids=lambda kind: kind.name)
def test_a_kinds_contract_is_checked_and_its_protocol_exported_and_documented(kind):
    """The contract names a class of corekit.contracts with a check; a protocol (every
    contract but the optimizer's, torch's own class) is ``corekit.NAME`` and docs/plugins.md
    sends authors to it."""
    protocol = getattr(contracts, kind.contract)
    assert kind.name in contracts.CONTRACTS
    if is_protocol(protocol):
        assert getattr(corekit, kind.contract) is protocol
        assert f"`corekit.{kind.contract}`" in (ROOT / "docs" / "plugins.md").read_text()
    else:
        assert protocol is torch.optim.Optimizer


def test_every_protocol_in_the_contracts_module_is_a_contract():
    protocols = {name for name, obj in vars(contracts).items() if is_protocol(obj)}
    second_forms = {"DatasetLabeler"}  # the pseudo_labeler kind's per-data-set form
    assert protocols == ({kind.contract for kind in TABLE if kind.contract} - {"Optimizer"}
                         | second_forms)


def test_the_builder_passes_only_the_kinds_context():
    with pytest.raises(TypeError, match=r"\['in_dim'\] are not context arguments of a loss"):
        build_component(plugin_set(), "loss", "nt_xent", {}, "losses.a", in_dim=8)
