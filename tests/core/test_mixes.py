"""Mixing components across papers (issue: mixing): the shipped mixes compose and train, the
headline mix computes ProPos's values, and a broken mix is refused before training with every
problem and the line to add."""

import pytest

from corekit import recipe as rc
from corekit.cli import main
from corekit.testing import assert_losses_match, load_only, loss_probe

pytest.importorskip("deepclust_digpro")
pytest.importorskip("deepclust_hadis")
pytest.importorskip("deepclust_cc")
PLUGINS = load_only("propos,hadis,digpro,cc")


def test_mix_dsa_pa_names_each_component_by_its_paper():
    recipe = rc.resolve("mix-dsa-pa", PLUGINS.find_recipe, "digits")
    losses = recipe.stages[0].losses
    assert losses["psa"].type == "hadis.dsa"
    assert losses["psl"].type == "digpro.prototype_aggregation"
    assert PLUGINS.registry.get("loss", "hadis.dsa").plugin == "hadis"
    assert PLUGINS.registry.get("loss", "digpro.prototype_aggregation").plugin == "digpro"


def test_mix_dsa_pa_computes_the_propos_loss_values():
    """DSA is ProPos's PSA and prototype aggregation is ProPos's PSL: same batch, same seed,
    the same values on fixed views and over three real training steps."""
    mix, propos = loss_probe(PLUGINS, "mix-dsa-pa"), loss_probe(PLUGINS, "propos")
    assert_losses_match(mix, propos, "fixed_views", rel=0)
    assert_losses_match(mix, propos, "train_steps", rel=0)


@pytest.mark.parametrize("name", ["mix-dsa-pa", "mix-hsd-groups", "mix-hadis-cc-head"])
def test_each_mix_composes_and_trains(name, tmp_path):
    assert main(["train", name, "--data", "digits", "--set", "data.subset=256", "--set",
                 "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set",
                 "train.batch_size=64", "--out", str(tmp_path / name), "--no-progress"]) == 0
    probe = loss_probe(PLUGINS, name)
    extra = {"mix-hsd-groups": {"hsd", "group"}, "mix-hadis-cc-head": {"cluster", "entropy"},
             "mix-dsa-pa": {"psa"}}[name]
    assert extra <= set(probe["fixed_views"])


def test_a_broken_mix_is_refused_with_every_problem_and_the_line_to_add(tmp_path, capsys):
    broken = tmp_path / "broken.toml"
    broken.write_text("""
name = "broken-mix"
extends = "mix-hsd-groups"
[model.heads.cluster]
type = "cc.cc_cluster_head"
input = "backbone"
[losses.psl]
proj = "cluster"
[losses.hsd]
pred = "prediction"
[[stage]]
name = "main"
drop = ["model.target", "clusterer"]
""")
    assert main(["check", str(broken), "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert "reads online:cluster as embedding, but part 'cluster' (head 'cluster', " \
           "cc.cc_cluster_head) produces probs" in err
    assert "no part 'prediction'" in err and "'pred'?" in err
    assert "needs a target branch: add [model.target] with parts = " in err
    assert "reads pseudo-labels: add a [clusterer] section" in err
    assert err.count("\n  - ") >= 4  # all of them, in one message
