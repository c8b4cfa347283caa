import pytest
import torch

from corekit import recipe as rc
from corekit.composer import CompositionError, compose
from corekit.errors import ComponentError, RecipeError
from corekit.runner import DataCache
from corekit.testing import plugin_set, tiny_recipe
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")


def composed(**sections):
    stage = rc.validate(tiny_recipe(**sections)).stages[0]
    cache = DataCache(torch.device("cpu"))
    return compose(PLUGINS, stage, lambda n: cache(n, stage.data.subset), torch.device("cpu"))


def error(**sections) -> str:
    with pytest.raises((RecipeError, ComponentError)) as err:
        composed(**sections)
    return str(err.value)


def test_tiny_recipe_composes():
    c = composed()
    assert c.n_clusters == 10 and len(c.views) == 2
    assert c.model.online.out_dim("proj") == 16 and c.model.target is None


def test_unknown_component_and_option():
    assert "did you mean 'nt_xent'" in error(losses={"instance": {"type": "nt_xnet"}})
    msg = error(losses={"instance": {"type": "nt_xent", "temprature": 0.1}})
    assert "losses.instance.temprature" in msg and "did you mean 'temperature'" in msg
    assert "expected" in error(losses={"instance": {"type": "nt_xent", "temperature": "hot"}})


def only_problem(**sections) -> str:
    with pytest.raises(CompositionError) as err:
        composed(**sections)
    (problem,) = err.value.problems
    return problem


def test_target_need_says_what_to_add():
    loss = {"agree": {"type": "toy.target_agreement"}}
    assert "needs a target branch: add [model.target] with parts = ['backbone', 'proj']" in \
        only_problem(losses=loss)
    assert "reads target:proj: add 'proj' to the parts" in \
        only_problem(losses=loss, model={"target": {"parts": ["backbone"]}})
    ok = composed(losses=loss, model={"target": {"parts": ["proj"]}})
    assert sorted(ok.model.target.network.names()) == ["backbone", "proj"]


def test_views_labels_bank_reference_needs():
    assert "set augment.views = 2" in only_problem(augment={"views": 1})
    assert "reads pseudo-labels: add a [clusterer] section" in only_problem(
        clusterer=None, eval={"assign": "head:cluster"},
        model={"target": {"parts": ["proj"]},
               "heads": {"cluster": {"type": "cluster_head", "input": "backbone"}}},
        losses={"agree": {"type": "toy.target_agreement", "labels": True}})
    assert "add [state.bank_b] with type = 'memory_bank'" in only_problem(
        state={"bank_a": {"type": "memory_bank", "source": "proj"}},
        losses={"pull": {"type": "toy.bank_pull"}})
    assert "[state.bank_b] is of type 'queue'" in only_problem(
        state={"bank_a": {"type": "memory_bank", "source": "proj"},
               "bank_b": {"type": "queue", "size": 8, "source": "proj"}},
        losses={"pull": {"type": "toy.bank_pull"}})
    assert "reads the reference set: set data.reference" in only_problem(
        losses={"instance": {"type": "nt_xent"}, "r": {"type": "toy.reference_mean"}})


def test_head_wiring_errors():
    assert "neither an encoder nor a head" in error(
        model={"heads": {"proj": {"type": "mlp_projector", "input": "nowhere"}}})
    assert "cycle" in error(model={"heads": {"a": {"type": "mlp_projector", "input": "b"},
                                             "b": {"type": "mlp_projector", "input": "a"}}})
    assert "train.freeze" in error(train={"freeze": ["bakbone"]})


def test_eval_assign_and_sampler_checks():
    assert "add a [clusterer]" in error(clusterer=None)
    assert "must be 'clusterer' or 'head:" in error(eval={"assign": "argmax"})
    assert "cluster_balanced" in error(clusterer=None, eval={"assign": "head:proj"},
                                       train={"sampler": "cluster_balanced"})


def test_target_branch_and_lr_mult():
    c = composed(model={"target": {"parts": ["proj"], "momentum": 0.9}},
                 train={"optimizer": {"lr_mult": {"heads.proj": 10.0}}})
    assert sorted(c.model.target.network.names()) == ["backbone", "proj"]
    assert not any(p.requires_grad for p in c.model.target.parameters())
    assert sorted(c.base_lrs) == pytest.approx([3e-4, 3e-3])
    bad_mult = {"optimizer": {"lr_mult": {"heads.x": 2.0}}}
    assert "no parameter starts with it" in error(train=bad_mult)
