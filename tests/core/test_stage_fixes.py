"""Issue 30 item 6, small fixes the stages need: BatchNorm of frozen parts (``train.freeze_bn``,
spice.md D7, check 9.16), the ``norm`` weight-decay rule (``train.optimizer.no_decay``) and the
NMI normalisation (``eval.nmi_average``, spice.md D11), each from the recipe to what it
changes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from corekit import metrics
from corekit import recipe as rc
from corekit.cli import main
from corekit.composer import compose
from corekit.engine.trainer import StageTrainer
from corekit.feature_cache import FrozenInputs, fixed_part
from corekit.handoff import StageOutputs
from corekit.network import Network
from corekit.runner import DataCache
from corekit.testing import plugin_set, run_tiny, tiny_recipe

PLUGINS = plugin_set()


# -- train.freeze_bn ---------------------------------------------------------------------------
def frozen_backbone_stages(freeze_bn: str) -> dict:
    """``pre`` (no training: the weights ``tune`` starts from) and ``tune``, which trains its
    heads for one M-step on the carried, frozen backbone (an MLP with BatchNorm layers)."""
    return tiny_recipe(stage=[
        {"name": "pre", "train": {"epochs": 0}, "drop": ["losses.instance"]},
        {"name": "tune", "train": {"freeze": ["backbone"], "freeze_bn": freeze_bn,
                                   "steps_per_epoch": 1}},
    ])


def running_stats(part: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in part.items() if k.endswith(("running_mean", "running_var"))}


@pytest.mark.parametrize("freeze_bn", ["eval", "train"])
def test_9_16_one_m_step_on_a_frozen_backbone(tmp_path, freeze_bn):
    """spice.md 9.16: after one M-step the frozen backbone's parameters are bit-identical and
    the head's changed; its BatchNorm running statistics are unchanged with ``"eval"`` and
    changed with ``"train"``."""
    run_tiny(frozen_backbone_stages(freeze_bn), tmp_path, PLUGINS)
    pre = StageOutputs.load(tmp_path / "stages" / "pre")
    tune = StageOutputs.load(tmp_path / "stages" / "tune")
    before, after = pre.parts["backbone"], tune.parts["backbone"]
    params = [k for k in before if k.endswith(("weight", "bias"))]
    assert params and all(torch.equal(before[k], after[k]) for k in params)
    assert not torch.equal(pre.parts["proj"]["0.weight"], tune.parts["proj"]["0.weight"])
    stats = running_stats(before)
    assert len(stats) == 4  # two BatchNorm1d layers
    moved = [k for k in stats if not torch.equal(before[k], after[k])]
    assert moved == ([] if freeze_bn == "eval" else list(stats))


def toy_network(freeze_bn: str) -> Network:
    backbone = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    return Network({"backbone": backbone}, {"head": nn.Linear(4, 2)}, {"head": "backbone"},
                   frozenset({"backbone"}), freeze_bn=freeze_bn)


@pytest.mark.parametrize("freeze_bn", ["eval", "train"])
def test_frozen_part_modes_and_what_stays_fixed(freeze_bn):
    """With ``"train"`` only the BatchNorm of a frozen part follows the network's mode (its
    dropout stays off), and the part no longer counts as fixed: its features are not taken from
    the cache nor prefilled into training steps."""
    network = toy_network(freeze_bn).train()
    bn, dropout = network.part("backbone")[1], network.part("backbone")[2]
    network.compute("head", torch.randn(8, 3), {})
    assert bn.training is (freeze_bn == "train") and not dropout.training
    assert network.part("head").training
    network.eval()
    assert not bn.training
    fixed = freeze_bn == "eval"
    assert network.fixed_parts() == (frozenset({"backbone"}) if fixed else frozenset())
    assert fixed_part(network, "head", trained=True) == ("backbone" if fixed else None)
    assert fixed_part(network, "head", trained=False) == "head"
    composed = SimpleNamespace(model=SimpleNamespace(online=network), eval_transform=nn.Identity(),
                               views={0: nn.Identity()})
    prefill = FrozenInputs.of(composed, lambda spec: torch.zeros(5, 4))
    assert set(prefill.outputs) == ({"backbone"} if fixed else set())


def test_check_shows_the_state_types_and_the_frozen_parts(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(rc.to_toml(frozen_backbone_stages("train")))
    assert main(["check", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "state: pseudo (pseudo_labels)" in out
    assert "frozen: backbone (BatchNorm train)" in out


def test_freeze_bn_rejects_other_values():
    with pytest.raises(rc.RecipeError, match="train.freeze_bn: 'frozen' is not one of 'eval' "
                                             "or 'train'"):
        rc.validate(tiny_recipe(train={"freeze_bn": "frozen"}))


# -- train.optimizer.no_decay ------------------------------------------------------------------
@pytest.mark.parametrize("optimizer, rule", [
    ({}, "none"),
    ({"no_decay_norm_bias": True}, "norm_bias"),
    ({"no_decay": "norm"}, "norm"),
    ({"no_decay": "norm_bias", "no_decay_norm_bias": True}, "norm_bias"),
])
def test_no_decay_spellings(optimizer, rule):
    stage = rc.validate(tiny_recipe(train={"optimizer": optimizer})).stages[0]
    assert stage.train.optimizer.decay_exempt() == rule


def compose_tiny(**sections) -> object:
    stage = rc.validate(tiny_recipe(**sections)).stages[0]
    cache = DataCache(torch.device("cpu"))
    return compose(PLUGINS, stage, lambda n: cache(n, 256), torch.device("cpu"), None, 3)


def test_no_decay_norm_reaches_the_optimizer():
    """The stage's optimizer holds the BatchNorm parameters of the MLP backbone, and only
    them, without weight decay; its linear biases keep theirs."""
    composed = compose_tiny(train={"optimizer": {"type": "sgd", "weight_decay": 5e-4,
                                                 "no_decay": "norm"}})
    names = {id(p): n for n, p in composed.model.online.named_parameters()}
    exempt = {names[id(p)] for g in composed.optimizer.param_groups
              if g["weight_decay"] == 0.0 for p in g["params"]}
    norms = {f"{prefix}.{k}" for prefix, m in composed.model.online.named_modules()
             if isinstance(m, nn.BatchNorm1d) for k in ("weight", "bias")}
    assert norms and exempt == norms


def test_no_decay_disagreeing_spellings_are_exit_2(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(rc.to_toml(tiny_recipe(train={"optimizer": {
        "no_decay": "norm", "no_decay_norm_bias": True}})))
    assert main(["check", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "train.optimizer.no_decay: 'norm' disagrees with no_decay_norm_bias = true" in err
    with pytest.raises(rc.RecipeError, match="train.optimizer.no_decay: 'bn' is not one of"):
        rc.validate(tiny_recipe(train={"optimizer": {"no_decay": "bn"}}))


# -- eval.nmi_average --------------------------------------------------------------------------
@pytest.mark.parametrize("average", ["arithmetic", "geometric"])
def test_d11_the_evaluation_reports_the_nmi_the_recipe_asks_for(tmp_path, average):
    """spice.md D11: ``eval.nmi_average`` picks the NMI the stage's evaluation reports, on a
    labelling where the two normalisations differ (classes 0 and 1 merged)."""
    composed = compose_tiny(eval={"nmi_average": average})
    trainer = StageTrainer(composed, tmp_path, torch.device("cpu"), None, 0, lambda _: None,
                           progress=False)
    labels = composed.train_set.labels
    merged = torch.where(labels == 1, torch.zeros_like(labels), labels)
    trainer.assignments = lambda: merged
    want = {m: metrics.nmi(labels, merged, m) for m in ("arithmetic", "geometric")}
    assert want["arithmetic"] != pytest.approx(want["geometric"], abs=1e-4)
    assert trainer.evaluate()["nmi"] == want[average]
