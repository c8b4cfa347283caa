"""``deepclust components KIND [NAME] [--json]``: plugin, aliases, summary with the paper
equation, options with types and defaults, needs and produces (issue: mixing components)."""

import json

from corekit.cli import main
from corekit.describe import summary
from corekit.plugins import load_plugins


def test_one_component_in_full(capsys):
    assert main(["components", "loss", "nt_xent"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("core.nt_xent  (loss from plugin 'core')")
    assert "SimCLR Eq. 1" in out
    assert "option temperature: float = 0.5" in out and "option head: str = 'proj'" in out
    assert "needs: online:proj (embedding); 2 views" in out


def test_head_produces_and_literal_options(capsys):
    assert main(["components", "head", "cluster_head"]) == 0
    out = capsys.readouterr().out
    assert "produces: probs" in out and "Literal['probs', 'logits']" in out
    assert "n_clusters" not in out.split("produces")[0].split("\n", 2)[2]  # context, not option


def test_json_listing_and_errors(capsys):
    assert main(["components", "state", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    by_name = {i["name"]: i for i in infos}
    assert {"ema", "memory_bank", "queue", "pseudo_labels"} <= set(by_name)
    bank = {o["name"]: o for o in by_name["memory_bank"]["options"]}
    assert bank["init"]["default"] == "normal" and "uniform" in bank["init"]["type"]
    queue = {o["name"]: o for o in by_name["queue"]["options"]}
    assert queue["size"]["default"] == "required"  # an option: `size` is only a view's context
    assert "network" not in queue and "generator" not in queue  # a state's context
    assert all(by_name[n]["plugin"] == "core" for n in ("ema", "memory_bank", "queue",
                                                          "pseudo_labels"))
    assert main(["components", "loss", "nt_xnet"]) == 2
    assert "did you mean 'nt_xent'" in capsys.readouterr().err
    assert main(["components", "lossez"]) == 2


def test_listing_summaries_read_from_source_match_the_imported_docstrings():
    """The listing reads a lazy target's docstring from its module's source; for every
    component of every installed plugin that is the summary the imported factory gives."""
    plugins = load_plugins()
    entries = [e for e in plugins.registry.entries() if e.kind != "recipe"]
    assert all(e.is_lazy for e in entries if e.kind != "need" and e.plugin == "core")
    from_source = {e.qualified + " " + e.kind: summary(e) for e in entries}
    for entry in entries:
        assert callable(entry.obj)  # imports it
    imported = {e.qualified + " " + e.kind: summary(e) for e in entries}
    assert from_source == imported
    if "cc.cc_instance_loss loss" in from_source:  # "corekit:NTXent", the core's public name
        assert from_source["cc.cc_instance_loss loss"] == from_source["core.nt_xent loss"] != ""
