"""The cidfd plugin as installed: registrations and aliases, the augmentation and lr steps, the
recipes against specs/cidfd.md §5, the recipe banks (§9 checks 1-2), the freezing of f_θ in a
stage-2 step (check 10), the k-means step of the recipe's clusterer (check 9), and a tiny
two-stage run with ``--stage target`` (corekit.cli)."""

from __future__ import annotations

import json
import math
import shutil
import tomllib
from pathlib import Path

import pytest
import torch
from deepclust_cidfd import (
    ContrastiveInstanceDiscrimination,
    FeatureDecorrelation,
    FractionalMultiStep,
    InstanceDiscrimination,
    idfd_aug,
)
from deepclust_cidfd.plugin import RECIPES

from corekit.cli import main
from corekit.testing import compose_trainer

PAPER = {name: tomllib.loads((RECIPES / f"{name}.toml").read_text())
         for name in ("idfd", "cidfd")}


# --- registration ----------------------------------------------------------------------------

def test_loads_through_its_entry_point(plugins):
    info = plugins.plugin("cidfd")
    assert info is not None and info.status == "loaded", info
    assert info.distribution == "deepclust-plugin-cidfd"
    assert info.components == {
        "loss": ["instance_discrimination", "idfd_instance_discrimination", "idfd_id",
                 "feature_decorrelation", "idfd_feature_decorrelation", "idfd_fd",
                 "contrastive_instance_discrimination", "cidfd_ci"],
        "augmentation": ["idfd_aug"],
        "schedule": ["idfd_multistep"],
        "need": ["cidfd_bank_source"],
        "dataset": ["stripe-mnist", "stripes"],
        "recipe": ["cidfd", "idfd"],
    }


def test_idfd_names_are_aliases_of_the_same_classes(plugins):
    registry = plugins.registry
    for alias in ("instance_discrimination", "idfd_instance_discrimination", "idfd_id",
                  "cidfd.instance_discrimination"):
        assert registry.get("loss", alias).obj is InstanceDiscrimination
    for alias in ("feature_decorrelation", "idfd_feature_decorrelation", "idfd_fd"):
        assert registry.get("loss", alias).obj is FeatureDecorrelation
    for alias in ("contrastive_instance_discrimination", "cidfd_ci"):
        assert registry.get("loss", alias).obj is ContrastiveInstanceDiscrimination


# --- augmentation and schedule ---------------------------------------------------------------

def test_idfd_aug_one_channel_and_rgb():
    torch.manual_seed(0)
    gray = idfd_aug(16, 1, (0.5,), (0.25,))
    x = torch.rand(8, 1, 28, 28)
    out = gray(x)
    assert out.shape == (8, 1, 16, 16)
    assert [type(m).__name__ for m in gray.ops] == ["RandomGeometry", "RandomColorJitter"]
    rgb = idfd_aug(32, 3, hflip_p=0.5)
    assert [type(m).__name__ for m in rgb.ops] == ["RandomGeometry", "RandomColorJitter",
                                                   "RandomGrayscale"]
    assert rgb.ops[0].flip_p == 0.5 and gray.ops[0].flip_p == 0.0
    jitter = rgb.ops[1]
    assert jitter.strengths == (0.4, 0.4, 0.4, 0.0) and jitter.p == 1.0
    assert rgb.ops[2].p == 0.2
    assert rgb(torch.rand(4, 3, 40, 40)).shape == (4, 3, 32, 32)
    assert gray.ops[0].crop.scale == (0.2, 1.0)
    assert gray.ops[1].strengths[2:] == (0.0, 0.0)  # no saturation / hue / grayscale on 1 channel


def test_idfd_multistep_matches_the_code_milestones_at_2000_epochs():
    schedule = FractionalMultiStep(steps_per_epoch=10, epochs=2000)
    for epoch, expected in [(599.9, 1.0), (600, 0.1), (949.9, 0.1), (950, 0.01),
                            (1300, 1e-3), (1650, 1e-4), (2000, 1e-4)]:
        assert schedule.factor(round(epoch * 10)) == pytest.approx(expected)
    short = FractionalMultiStep(steps_per_epoch=1, epochs=20)
    assert [short.factor(s) for s in (5, 6, 9, 10, 13, 17)] == pytest.approx(
        [1, 0.1, 0.1, 0.01, 1e-3, 1e-4])
    with pytest.raises(ValueError, match="fractions"):
        FractionalMultiStep(steps_per_epoch=1, epochs=20, fractions=(0.5, 0.3))


# --- the recipes against the spec -------------------------------------------------------------

def test_paper_settings_match_the_spec():
    """§5: ResNet-18 (CIFAR stem), d = 128 linear_l2, SGD 0.03 m0.9 wd 5e-4 no Nesterov,
    batch 128, 2000 epochs, the IDFD milestones, τ's and m = 0.5, k-means n_init 20."""
    for raw in PAPER.values():
        assert raw["model"]["backbone"]["type"] == "resnet18_cifar"
        assert raw["model"]["heads"]["emb"] == {"type": "linear_l2", "input": "backbone",
                                                "out_dim": 128}
        assert raw["augment"] == {"type": "idfd_aug", "views": 1, "normalize": True}
        train = raw["train"]
        assert (train["epochs"], train["batch_size"]) == (2000, 128)
        assert train["optimizer"] == {"type": "sgd", "lr": 0.03, "weight_decay": 5e-4,
                                      "momentum": 0.9, "nesterov": False}
        assert train["schedule"] == {"type": "idfd_multistep", "gamma": 0.1}
        assert raw["losses"]["fd"] == {"type": "feature_decorrelation", "head": "emb",
                                       "temperature": 2.0}
        clusterer = raw["clusterer"]
        assert (clusterer["type"], clusterer["n_init"], clusterer["features"]) == (
            "kmeans", 20, "online:emb")
    idfd = PAPER["idfd"]
    assert idfd["memory_bank"] == {"source": "online:emb", "momentum": 0.5, "init": "uniform"}
    assert idfd["losses"]["id"]["temperature"] == 1.0
    background, target = PAPER["cidfd"]["stage"]
    assert background["data"] == {"name": "stripes"}
    assert background["losses"]["id"] == {"type": "instance_discrimination", "head": "emb",
                                          "bank": "bank_z", "temperature": 1.0}
    assert target["fresh"] is True
    assert target["train"]["freeze"] == ["background", "background_emb"]
    assert target["model"]["encoders"]["background"] == {"type": "resnet18_cifar",
                                                         "init_from": "background:backbone"}
    assert target["model"]["heads"]["background_emb"]["init_from"] == "background:emb"
    banks = {**background["state"], **target["state"]}
    assert set(banks) == {"bank_z", "bank_v", "bank_w"}
    for name, bank in banks.items():
        assert (bank["type"], bank["init"], bank["momentum"]) == ("memory_bank", "uniform",
                                                                  0.5), name
    assert banks["bank_w"]["source"] == "online:background_emb"
    ci = target["losses"]["ci"]
    assert (ci["tau_x"], ci["tau_xb"], ci["head"], ci["background"]) == (
        1.0, 1.0, "emb", "background_emb")


def test_check_recipes_compose(mnist_dir, monkeypatch, capsys):
    """``deepclust check`` composes both stages of the paper recipe and of the CPU preset, and
    the idfd recipe on Stripe-MNIST."""
    monkeypatch.setenv("DEEPCLUST_PLUGINS", "cidfd")
    data = f"stripe-mnist:{mnist_dir}"
    assert main(["check", "cidfd", "--data", data]) == 0
    assert main(["check", "cidfd", "--set", f'data.name="{data}"']) == 0
    assert main(["check", "idfd", "--data", data]) == 0
    printed = capsys.readouterr().out
    assert "stage background: 5000 images of stripes, 4 clusters" in printed
    assert "stage target: 10000 images of stripe-mnist, 10 clusters" in printed
    assert "stage target: 60000 images of stripe-mnist, 10 clusters" in printed


def test_a_bank_fed_by_the_wrong_head_is_a_compose_error(mnist_dir, monkeypatch, capsys):
    monkeypatch.setenv("DEEPCLUST_PLUGINS", "cidfd")
    code = main(["check", "cidfd", "--data", f"stripe-mnist:{mnist_dir}",
                 "--set", 'stages.target.state.bank_w.source="online:emb"'])
    assert code == 2
    assert ("reads memory bank 'bank_w' as the bank of online:background_emb, but the bank is "
            "fed by online:emb") in capsys.readouterr().err


# --- §9 checks 1, 2, 9, 10 on the composed recipe --------------------------------------------

STAGE2 = RECIPES / "cidfd.toml"
SMALL = {"type": "mlp", "hidden": 32, "out_dim": 16}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def compose_target(plugins, tmp_path: Path, dataset, *overrides: str):
    """Stage 2 of the cidfd recipe as a one-stage recipe (small mlp parts; f_θ random instead
    of carried from stage 1, still frozen), composed by ``corekit.testing.compose_trainer``."""
    raw = tomllib.loads(STAGE2.read_text())
    target = raw.pop("stage")[1]
    raw.pop("presets", None)
    for key in ("name", "fresh"):
        target.pop(key)
    for part in ("encoders", "heads"):
        for spec in target["model"][part].values():
            spec.pop("init_from")
    raw = merge(raw, target)
    raw["model"]["backbone"] = dict(SMALL)
    raw["model"]["encoders"]["background"] = dict(SMALL)
    raw["name"] = "cidfd-target-only"
    path = tmp_path / "target_only.toml"
    path.write_text(_toml(raw))
    return compose_trainer(plugins, str(path), tmp_path / "run", *overrides, dataset=dataset)


def _toml(raw: dict, prefix: str = "") -> str:
    """A minimal TOML writer for the nested tables of a recipe (tests only)."""
    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, float) and math.isinf(v):
            return "inf"
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return repr(v)

    flat = [f"{k} = {scalar(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    out = ([f"[{prefix}]"] if prefix and flat else []) + flat
    for k, v in raw.items():
        if isinstance(v, dict):
            out.append(_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(out) + "\n"


@pytest.fixture
def stage2(plugins, tmp_path, stripe_mnist):
    data = stripe_mnist.subset(512, seed=0)
    return compose_target(plugins, tmp_path, data, "train.batch_size=32"), data


def test_check1_bank_update_of_the_recipe_banks(stage2):
    """m = 0.5: r = [1, 0, 0], q = [0, 1, 0] → r' = [0.707107, 0.707107, 0] (on the first
    three coordinates of a 128-d row)."""
    trainer, _ = stage2
    for name in ("bank_v", "bank_w"):
        bank = trainer.composed.state[name]
        bank.features[3] = 0.0
        bank.features[3, 0] = 1.0
        q = torch.zeros(1, bank.features.shape[1])
        q[0, 1] = 1.0
        bank.update(torch.tensor([3]), q)
        assert bank.read()[3, :3].tolist() == pytest.approx([0.707107, 0.707107, 0.0],
                                                            abs=1e-5)


def test_check2_bank_init_bound_of_the_recipe_banks(plugins, tmp_path, stripe_mnist):
    """init = "uniform": every entry within a = 1/√(128/3) = 0.153093, E‖row‖² = 1 (mean over
    10⁴ rows within 1 ± 0.02), rows not renormalised."""
    data = stripe_mnist.subset(10_000, seed=0)
    trainer = compose_target(plugins, tmp_path, data, "model.heads.emb.out_dim=128",
                             "model.heads.background_emb.out_dim=128")
    bound = 1 / math.sqrt(128 / 3)
    assert bound == pytest.approx(0.153093, abs=1e-6)
    for name in ("bank_v", "bank_w"):
        rows = trainer.composed.state[name].read()
        assert rows.shape == (10_000, 128)
        assert rows.abs().max().item() <= bound
        assert rows.abs().max().item() > 0.99 * bound  # uniform up to the bound
        norms = rows.pow(2).sum(1)
        assert norms.mean().item() == pytest.approx(1.0, abs=0.02)
        assert norms.std().item() > 0.05  # not renormalised
    state = trainer.composed.state
    assert not torch.equal(state["bank_v"].read(), state["bank_w"].read())


def test_check10_freezing_after_one_stage2_step(stage2):
    """After one stage-2 step: f_θ's parameters and BN buffers are bit-identical and have no
    gradient, only the rows of V̄ and W̄ at the batch indices changed, g_ψ moved."""
    trainer, data = stage2
    net = trainer.composed.model.online
    frozen = {k: v.clone() for k, v in net.state_dict().items()
              if k.startswith(("encoders.background.", "heads.background_emb."))}
    assert any("running_mean" in k for k in frozen)  # the mlp has BN buffers
    target = {k: v.clone() for k, v in net.state_dict().items()
              if k.startswith("encoders.backbone.")}
    banks = {n: trainer.composed.state[n].read().clone() for n in ("bank_v", "bank_w")}
    net.train()
    indices = torch.tensor([5, 17, 99, 100, 256, 300, 411, 500])
    trainer.train_step(indices, data.batch(indices), 0, torch.Generator().manual_seed(0))
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen.items())
    assert all(p.grad is None for n, p in net.named_parameters()
               if n.startswith(("encoders.background.", "heads.background_emb.")))
    assert any(not torch.equal(v, after[k]) for k, v in target.items())
    for name, before in banks.items():
        changed = (trainer.composed.state[name].read() != before).any(1).nonzero().flatten()
        assert changed.tolist() == indices.tolist(), name


def test_check9_kmeans_step_of_the_recipe_clusterer(plugins, tmp_path, stripe_mnist):
    """The recipe's clusterer (k-means, 20 restarts, Euclidean) with K = 2 on §9's four
    points: assignments [0, 0, 1, 1] (up to relabelling), centroids ±[0.9, 0.3]."""
    trainer = compose_target(plugins, tmp_path, stripe_mnist.subset(64, seed=0),
                             "data.n_clusters=2")
    clusterer = trainer.composed.clusterer
    assert type(clusterer) is plugins.registry.get("clusterer", "kmeans").obj
    assert (clusterer.n_clusters, clusterer.n_init, clusterer.max_iter) == (2, 20, 300)
    x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [-1.0, 0.0], [-0.8, -0.6]])
    result = trainer.composed.clusterer.fit(x)
    labels = result.labels.tolist()
    assert labels[0] == labels[1] != labels[2] == labels[3]
    centroids = sorted(result.centroids.tolist(), reverse=True)
    assert centroids[0] == pytest.approx([0.9, 0.3], abs=1e-5)
    assert centroids[1] == pytest.approx([-0.9, -0.3], abs=1e-5)


# --- a tiny two-stage run and --stage target --------------------------------------------------

TINY = ["--set", "data.subset=256", "--set", "stages.background.data.subset=128",
        "--set", "train.epochs=1", "--set", "stages.background.train.epochs=1",
        "--set", "train.steps_per_epoch=2",
        "--set", "train.batch_size=32", "--set", "clusterer.n_init=1",
        "--set", 'train.device="cpu"', "--no-progress",
        "--set", 'model.backbone={type="mlp", hidden=32, out_dim=16}',
        "--set", 'stages.target.model.encoders.background={type="mlp", hidden=32, out_dim=16}']


def test_two_stage_run_carries_the_frozen_background_encoder(mnist_dir, tmp_path,
                                                             monkeypatch, capsys):
    """Stage 2's f_θ (encoder ``background`` and head ``background_emb``) equals stage 1's
    saved ``backbone``/``emb`` bit for bit (BN buffers included) and stays so through stage 2;
    g_ψ starts fresh; ``--stage target`` reruns stage 2 alone with the same result."""
    monkeypatch.setenv("DEEPCLUST_PLUGINS", "cidfd")
    out = tmp_path / "run"
    args = ["train", "cidfd", "--data", f"stripe-mnist:{mnist_dir}", "--out", str(out), *TINY]
    assert main(args) == 0
    stages = out / "stages"
    stage1 = torch.load(stages / "background" / "outputs.pt", weights_only=True)
    stage2 = torch.load(stages / "target" / "outputs.pt", weights_only=True)
    assert set(stage1["state"]) == {"bank_z", "pseudo"}
    assert set(stage2["state"]) == {"bank_v", "bank_w", "pseudo"}
    for theirs, ours in (("backbone", "background"), ("emb", "background_emb")):
        saved, carried = stage1["parts"][theirs], stage2["parts"][ours]
        assert saved.keys() == carried.keys()
        assert all(torch.equal(saved[k], carried[k]) for k in saved), ours
    assert any("running_var" in k for k in stage2["parts"]["background"])
    untrained = tmp_path / "untrained"  # stage 2 at lr 1e-12: g_ψ's start, to float32 precision
    shutil.copytree(out, untrained)
    assert main([*args[:5], str(untrained), *TINY, "--stage", "target",
                 "--set", "stages.target.train.optimizer.lr=1e-12",
                 "--set", "stages.target.train.optimizer.weight_decay=0.0"]) == 0
    start = torch.load(untrained / "stages" / "target" / "outputs.pt", weights_only=True)
    for part in ("backbone", "emb"):  # fresh = true: not stage 1's weights
        assert all(not torch.equal(v, stage1["parts"][part][k])
                   for k, v in start["parts"][part].items() if v.is_floating_point()
                   and "running" not in k), part
    first = json.loads((out / "final.json").read_text())
    stage1_bytes = (stages / "background" / "outputs.pt").read_bytes()
    (out / "final.json").unlink()
    capsys.readouterr()
    assert main([*args, "--stage", "target"]) == 0
    printed = capsys.readouterr().out
    assert "stage background" not in printed and "stage target" in printed
    assert (stages / "background" / "outputs.pt").read_bytes() == stage1_bytes
    again = json.loads((out / "final.json").read_text())
    assert {k: again[k] for k in ("nmi", "acc", "ari")} == {k: first[k] for k in
                                                            ("nmi", "acc", "ari")}
    rerun = torch.load(stages / "target" / "outputs.pt", weights_only=True)
    assert all(torch.equal(v, stage2["parts"]["background"][k])
               for k, v in rerun["parts"]["background"].items())


def test_check_composes_on_a_set_without_a_preset() -> None:
    """The auto preset swaps the backbone; the frozen background encoder of stage 2 follows it
    (it exited 2: "model.encoders.background differs from the one it starts from")."""
    from corekit.cli import main

    assert main(["check", "cidfd", "--data", "digits"]) == 0
