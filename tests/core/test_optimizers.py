import math

import pytest
import torch
from torch import nn

from corekit.components import optimizers
from corekit.plugins import load_plugins


def toy() -> nn.ModuleDict:
    torch.manual_seed(0)
    return nn.ModuleDict({
        "backbone": nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)),
        "heads": nn.ModuleDict({"pred": nn.Linear(4, 2)}),
    })


def loss_of(model: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
    return model["heads"]["pred"](model["backbone"](x)).pow(2).mean()


def old_groups(model: nn.Module, lr: float, lr_mult: dict[str, float]) -> list[dict]:
    """The grouping of the if/elif ``composer.build_optimizer`` these factories replace."""
    groups: dict[float, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            mult = next((m for p, m in lr_mult.items() if name.startswith(p)), 1.0)
            groups.setdefault(mult, []).append(param)
    return [{"params": ps, "lr": lr * m} for m, ps in groups.items()]


def test_param_groups_lr_mult_and_no_decay():
    model = toy()
    model["backbone"][0].bias.requires_grad_(False)
    groups = optimizers.param_groups(model, lr=0.1, weight_decay=1e-4,
                                     lr_mult={"heads.pred": 10.0, "heads": 3.0},
                                     no_decay="norm_bias")
    bb, pred = model["backbone"], model["heads"]["pred"]
    assert [[id(p) for p in g["params"]] for g in groups] == [
        [id(bb[0].weight)], [id(bb[1].weight), id(bb[1].bias)], [id(pred.weight)],
        [id(pred.bias)]]
    assert [g["lr"] for g in groups] == pytest.approx([0.1, 0.1, 1.0, 1.0])
    assert [g["weight_decay"] for g in groups] == [1e-4, 0.0, 1e-4, 0.0]
    assert [g.get("lars_exclude") for g in groups] == [None, True, None, True]
    # The first matching prefix wins.
    swapped = optimizers.param_groups(model, lr=0.1, weight_decay=0.0,
                                      lr_mult={"heads": 3.0, "heads.pred": 10.0})
    assert [g["lr"] for g in swapped] == pytest.approx([0.1, 0.3])


def conv_bn_ln() -> nn.Sequential:
    """A conv with a bias, a BatchNorm, a LayerNorm and a linear layer with a bias."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.Flatten(),
                         nn.LayerNorm(16), nn.Linear(16, 2))


@pytest.mark.parametrize("rule, decayed", [
    ("none", {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias", "4.weight",
              "4.bias"}),
    ("norm", {"0.weight", "0.bias", "4.weight", "4.bias"}),
    ("norm_bias", {"0.weight", "4.weight"}),
])
def test_no_decay_rules_pick_the_decayed_parameters(rule, decayed):
    """``norm`` exempts the BatchNorm and LayerNorm parameters only (conv and linear biases keep
    their decay); ``norm_bias`` every 1-d tensor; ``none`` nothing."""
    model = conv_bn_ln()
    names = {id(p): n for n, p in model.named_parameters()}
    groups = optimizers.param_groups(model, 0.1, 5e-4, {}, no_decay=rule)
    got = {names[id(p)] for g in groups if g["weight_decay"] == 5e-4 for p in g["params"]}
    exempt = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert got == decayed
    assert exempt == set(names.values()) - decayed
    assert all(g.get("lars_exclude") is (True if g["weight_decay"] == 0.0 else None)
               for g in groups)


def test_param_groups_match_old_grouping_without_no_decay():
    model = toy()
    lr_mult = {"heads.pred": 10.0, "backbone.1": 0.5}
    new = optimizers.param_groups(model, 0.05, 5e-4, lr_mult)
    old = old_groups(model, 0.05, lr_mult)
    assert [[id(p) for p in g["params"]] for g in new] == [
        [id(p) for p in g["params"]] for g in old]
    assert [g["lr"] for g in new] == [g["lr"] for g in old]
    assert all("lars_exclude" not in g for g in new)


def test_param_groups_errors():
    model = toy()
    with pytest.raises(ValueError, match="no parameter starts with it"):
        optimizers.param_groups(model, 0.1, 0.0, {"heads.predd": 10.0})
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        optimizers.param_groups(model, 0.1, 0.0, {})


@pytest.mark.parametrize("name, factory, reference", [
    ("sgd", optimizers.sgd, lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.9,
                                                       weight_decay=5e-4)),
    ("adam", optimizers.adam, lambda g: torch.optim.Adam(g, lr=0.05, betas=(0.8, 0.99),
                                                         weight_decay=5e-4)),
    ("adamw", optimizers.adamw, lambda g: torch.optim.AdamW(g, lr=0.05, betas=(0.8, 0.99),
                                                           weight_decay=5e-4)),
])
def test_factories_equal_old_build_optimizer(name, factory, reference):
    lr_mult = {"heads.pred": 10.0}
    ours, theirs = toy(), toy()
    options = {"momentum": 0.9} if name == "sgd" else {"betas": [0.8, 0.99]}
    opt_ours = factory(optimizers.param_groups(ours, 0.05, 5e-4, lr_mult),
                       lr=0.05, weight_decay=5e-4, **options)
    opt_theirs = reference(old_groups(theirs, 0.05, lr_mult))
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
        for _ in range(3):
            opt.zero_grad()
            loss_of(model, x).backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(ours["heads"]["pred"].weight, toy()["heads"]["pred"].weight)


def test_lars_two_steps_by_hand():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    b = nn.Parameter(torch.tensor([1.0]))
    opt = optimizers.LARS([{"params": [w]}, {"params": [b], "lars_exclude": True}], lr=0.1,
                          weight_decay=0.01, momentum=0.9, trust_coefficient=0.001, eps=0.0)
    g, gb = [0.6, 0.8], 0.5  # ‖g‖ = 1

    # Step 1: ‖w‖ = 5, λ = 0.001·5 / (1 + 0.01·5); v = 0.1·λ·(g + 0.01 w); w ← w − v.
    lam = 0.001 * 5 / (1 + 0.05)
    v = [0.1 * lam * (gi + 0.01 * wi) for gi, wi in zip(g, [3.0, 4.0], strict=True)]
    w1 = [wi - vi for wi, vi in zip([3.0, 4.0], v, strict=True)]
    # Step 2: λ from ‖w1‖; v ← 0.9 v + 0.1·λ·(g + 0.01 w1).
    lam2 = 0.001 * math.hypot(*w1) / (1 + 0.01 * math.hypot(*w1))
    v2 = [0.9 * vi + 0.1 * lam2 * (gi + 0.01 * wi) for vi, gi, wi in zip(v, g, w1, strict=True)]
    w2 = [wi - vi for wi, vi in zip(w1, v2, strict=True)]
    # Excluded b: plain momentum SGD, no trust ratio, no decay: v = 0.05, then 0.095.
    expected = [(w1, [0.95]), (w2, [0.855])]

    for want_w, want_b in expected:
        w.grad, b.grad = torch.tensor(g), torch.tensor([gb])
        opt.step()
        assert w.tolist() == pytest.approx(want_w, rel=1e-6)
        assert b.tolist() == pytest.approx(want_b, rel=1e-6)


def test_lars_excluded_group_is_momentum_sgd():
    ours, theirs = toy(), toy()
    lars = optimizers.LARS([{"params": list(ours.parameters()), "lars_exclude": True,
                             "weight_decay": 0.1}], lr=0.05, momentum=0.9)
    sgd = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
    for model, opt in ((ours, lars), (theirs, sgd)):
        for _ in range(3):
            opt.zero_grad()
            loss_of(model, x).backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_lars_zero_weights_still_move():
    w = nn.Parameter(torch.zeros(3))
    opt = optimizers.LARS([w], lr=0.1, momentum=0.0)
    w.grad = torch.tensor([1.0, 2.0, 2.0])
    opt.step()
    assert w.tolist() == pytest.approx([-0.1, -0.2, -0.2])


def test_invalid_options_raise():
    params = list(toy().parameters())
    with pytest.raises(ValueError, match="momentum"):
        optimizers.LARS(params, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="trust_coefficient"):
        optimizers.LARS(params, lr=0.1, trust_coefficient=0.0)
    with pytest.raises(ValueError, match="betas"):
        optimizers.adam(params, lr=0.1, betas=[0.9, 0.99, 0.999])


@pytest.mark.parametrize("name, obj", [
    ("sgd", optimizers.sgd), ("adam", optimizers.adam), ("adamw", optimizers.adamw),
    ("lars", optimizers.LARS),
])
def test_registered_and_build_optimizers(name, obj):
    registry = load_plugins().registry
    assert registry.get("optimizer", name).obj is obj
    model = toy()
    groups = optimizers.param_groups(model, 0.1, 1e-4, {"heads": 2.0},
                                     no_decay="norm_bias")
    built = registry.build("optimizer", name, groups, lr=0.1, weight_decay=1e-4)
    assert isinstance(built, torch.optim.Optimizer)
    assert [g["lr"] for g in built.param_groups] == pytest.approx([0.1, 0.1, 0.2, 0.2])
