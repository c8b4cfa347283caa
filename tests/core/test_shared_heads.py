"""Core v2 item 5: one head's module applied to a second input (DigPro's one predictor on the
noisy and the clean projection)."""

import pytest
import torch

from corekit import recipe as rc
from corekit.composer import compose
from corekit.runner import DataCache
from corekit.testing import plugin_set, tiny_recipe
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")


def shared(**sections):
    heads = {"pred": {"type": "predictor", "input": "proj", "hidden": 8},
             "proj2": {"type": "mlp_projector", "input": "backbone", "hidden": 8, "out_dim": 16},
             "pred_clean": {"share": "pred", "input": "proj2"}}
    raw = tiny_recipe(model={"heads": heads, "target": {"parts": ["pred", "pred_clean"]}},
                      **sections)
    stage = rc.validate(raw).stages[0]
    cache = DataCache(torch.device("cpu"))
    return compose(PLUGINS, stage, lambda n: cache(n, 256), torch.device("cpu"))


def test_parameters_exist_once_in_network_optimizer_and_state_dict():
    c = shared()
    net = c.model.online
    assert net.part("pred_clean") is net.part("pred")
    assert "pred_clean" in net.names() and "pred_clean" not in net.owned()
    in_optimizer = [p for g in c.optimizer.param_groups for p in g["params"]]
    assert len(in_optimizer) == len({id(p) for p in in_optimizer}) == \
        len(list(net.parameters()))
    assert not any(k.startswith("heads.pred_clean") for k in net.state_dict())


def test_outputs_are_cached_per_head_name_and_the_ema_keeps_the_sharing():
    c = shared()
    x = torch.rand(8, 1, 8, 8)
    cache: dict = {}
    noisy, clean = (c.model.online.compute(n, x, cache) for n in ("pred", "pred_clean"))
    assert not torch.allclose(noisy, clean)  # same module, different inputs
    assert torch.allclose(clean, c.model.online.part("pred")(cache["proj2"]))
    target = c.model.target.network
    assert target.part("pred_clean") is target.part("pred")
    assert target.part("pred") is not c.model.online.part("pred")


def test_share_errors():
    with pytest.raises(rc.RecipeError, match="takes only `share` and `input`"):
        raw = tiny_recipe(model={"heads": {"p2": {"share": "proj", "type": "predictor"}}})
        stage = rc.validate(raw).stages[0]
        cache = DataCache(torch.device("cpu"))
        compose(PLUGINS, stage, lambda n: cache(n, 256), torch.device("cpu"))
    with pytest.raises(rc.RecipeError, match="'prj' is not a head; did you mean 'proj'"):
        raw = tiny_recipe(model={"heads": {"p2": {"share": "prj"}}})
        stage = rc.validate(raw).stages[0]
        compose(PLUGINS, stage, lambda n: cache(n, 256), torch.device("cpu"))
