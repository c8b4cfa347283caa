import json

import pytest
import torch

from corekit import checkpoint_io as checkpoint
from corekit import recipe as rc
from corekit.cli import main
from corekit.composer import build_network
from corekit.data import load_dataset
from corekit.engine.seed import seed_everything
from corekit.errors import TrainingError
from corekit.runner import train
from corekit.testing import (
    assert_above_chance,
    plugin_set,
    record_evaluations,
    run_tiny,
    tiny_recipe,
)
from tests.core import toy_plugin

PLUGINS = plugin_set(toy_plugin, name="toy")
CKPT = "stages/main/checkpoint.pt"


@pytest.fixture
def evaluations(monkeypatch):
    return record_evaluations(monkeypatch)


def test_run_directory_contents(tmp_path):
    final = run_tiny(tiny_recipe(), tmp_path, PLUGINS)
    assert set(final) >= {"nmi", "acc", "ari", "empty_clusters"}
    for name in ("final.json", "metrics.jsonl", "recipe.toml", "versions.json",
                 "stages/main/checkpoint.pt", "stages/main/outputs.pt", "report.md"):
        assert (tmp_path / name).exists(), name
    versions = json.loads((tmp_path / "versions.json").read_text())
    assert versions["plugins"]["core"] and "toy" in versions["plugins"]
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 1 and "instance" in record and record["nmi"] == final["nmi"]


def test_exact_resume(tmp_path):
    """Stopped after epoch 2 and resumed == uninterrupted (same seed, CPU)."""
    raw = tiny_recipe(train={"epochs": 3}, clusterer={"every": 1, "before_training": True},
                      model={"target": {"parts": ["proj"], "momentum": 0.9}},
                      losses={"centre": {"type": "toy.momentum_centre", "dim": 16}})
    full = run_tiny(raw, tmp_path / "full", PLUGINS)
    part = rc.merge(raw, {"train": {"epochs": 2}})
    run_tiny(part, tmp_path / "resumed", PLUGINS)
    resumed = train(rc.validate(raw), tmp_path / "resumed", PLUGINS, resume=True,
                    log=lambda _: None, progress=False)
    for key in ("nmi", "acc", "ari"):
        assert resumed[key] == full[key]
    a = checkpoint.load(tmp_path / "full" / CKPT)
    b = checkpoint.load(tmp_path / "resumed" / CKPT)
    for name, value in a["online"].items():
        assert torch.equal(value, b["online"][name]), name
    assert torch.equal(a["losses"]["centre"]["centre"], b["losses"]["centre"]["centre"])
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_nan_loss_stops_with_step_term_and_checkpoint(tmp_path):
    raw = tiny_recipe(train={"epochs": 2},
                      losses={"bad": {"type": "toy.nan_loss", "at_epoch": 1}})
    with pytest.raises(TrainingError) as err:
        run_tiny(raw, tmp_path, PLUGINS)
    msg = str(err.value)
    assert "step 4 (epoch 1)" in msg and "bad (toy.nan_loss)" in msg
    assert str(tmp_path / CKPT) in msg


def test_stateful_loss_updates_inside_forward_with_gradient(tmp_path):
    """DigPro's shape: the state moves inside the forward and the loss's gradient flows
    through the update (g' = βg + (1 − β) mean(ẑ) keeps the graph)."""
    loss = toy_plugin.MomentumCentre(beta=0.9, dim=4)
    loss.centre.fill_(0.5)
    z = torch.randn(6, 4, requires_grad=True)
    step = type("S", (), {"output": lambda self, name, view: z})()
    loss(step).backward()
    leaf = z.detach().clone().requires_grad_(True)
    zn = torch.nn.functional.normalize(leaf, dim=1)
    with_update = -(zn @ (0.9 * 0.5 + 0.1 * zn.mean(0))).mean()
    with_update.backward()
    assert torch.allclose(z.grad, leaf.grad)  # the gradient through the centre's update
    detached = z.detach().clone().requires_grad_(True)
    dn = torch.nn.functional.normalize(detached, dim=1)
    (-(dn @ (0.9 * 0.5 + 0.1 * dn.mean(0)).detach()).mean()).backward()
    assert not torch.allclose(z.grad, detached.grad)  # a detached update would differ
    assert torch.allclose(loss.centre, 0.45 + 0.1 * zn.detach().mean(0))
    raw = tiny_recipe(losses={"centre": {"type": "toy.momentum_centre", "dim": 16}})
    run_tiny(raw, tmp_path, PLUGINS)
    state = checkpoint.load(tmp_path / CKPT)["losses"]["centre"]["centre"]
    assert state.abs().sum() > 0  # the trained state is checkpointed


def test_second_encoder_frozen_and_reference_set(tmp_path, evaluations):
    raw = tiny_recipe(
        data={"reference": "digits"},
        model={"encoders": {"other": {"type": "mlp", "hidden": 32, "out_dim": 16}}},
        losses={"agree": {"type": "toy.encoder_agreement", "encoder": "other"},
                "ref": {"type": "toy.reference_mean", "weight": 0.1}},
        train={"freeze": ["other"]})
    final = run_tiny(raw, tmp_path, PLUGINS)
    assert_above_chance(final, evaluations)
    seed_everything(0)
    stage = rc.validate(raw).stages[0]
    fresh = build_network(PLUGINS, stage, load_dataset("digits"), 10)
    trained = checkpoint.load(tmp_path / CKPT)["online"]
    frozen = {k: v for k, v in fresh.state_dict().items() if k.startswith("encoders.other.")}
    assert frozen and all(torch.equal(v, trained[k]) for k, v in frozen.items())
    moved = [k for k, v in fresh.state_dict().items()
             if k.startswith("encoders.backbone.") and not torch.equal(v, trained[k])]
    assert moved


def test_multi_stage_carries_weights_and_trains_on_reference(tmp_path, evaluations):
    raw = tiny_recipe(
        data={"reference": "digits"},
        stage=[{"name": "background", "data": {"source": "reference"},
                "train": {"epochs": 1}},
               {"name": "target", "train": {"freeze": ["backbone"]},
                "model": {"heads": {"cluster": {"type": "cluster_head", "input": "backbone"}}},
                "losses": {"entropy": {"type": "batch_marginal_entropy", "head": "cluster"}},
                "eval": {"assign": "head:cluster"}}])
    final = run_tiny(raw, tmp_path, PLUGINS)
    # The final scores are those of the last stage's head assignments. Not above chance: a
    # head trained 3 steps on the batch entropy alone still puts (nearly) every image into
    # one cluster (NMI 0 at 3 of seeds 0-3), so only the written-equals-evaluated part holds.
    assert len(evaluations) == 2 and evaluations[-1][1].shape == (256,)
    assert_above_chance(final, evaluations, margins={})
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records] == ["background", "target"]


def test_fresh_stage_and_shape_mismatch(tmp_path):
    raw = tiny_recipe(stage=[{"name": "a"},
                             {"name": "b", "model": {"backbone": {"out_dim": 8}}}])
    with pytest.raises(Exception, match="set `fresh = true`"):
        run_tiny(raw, tmp_path / "x", PLUGINS)
    raw["stage"][1]["fresh"] = True
    run_tiny(raw, tmp_path / "y", PLUGINS)


def test_estep_schedule_and_cluster_balanced_sampler(tmp_path):
    raw = tiny_recipe(train={"epochs": 3, "sampler": "cluster_balanced"},
                      clusterer={"type": "spherical_kmeans", "every": 2, "before_training": True,
                                 "features": "online:proj", "n_init": 1})
    run_tiny(raw, tmp_path, PLUGINS)
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert ["estep_seconds" in r for r in records] == [True, False, True]


def test_cli_train_and_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "simclr-kmeans", "--data", "digits", "--set", "train.epochs=1",
                 "--set", "train.steps_per_epoch=2", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "NMI" in printed and "ACC" in printed and "ARI" in printed
    final = json.loads((out / "final.json").read_text())
    assert main(["evaluate", str(out)]) == 0
    assert f"NMI {final['nmi']:.4f}" in capsys.readouterr().out


def test_cli_user_errors_exit_2(capsys, tmp_path):
    assert main(["train", "simclr-kmeans", "--set", "train.epochs=x"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    bad = tmp_path / "bad-data"
    assert main(["train", "simclr-kmeans", "--data", "mnsit", "--out", str(bad)]) == 2
    assert "mnist" in capsys.readouterr().err
    assert not bad.exists()  # a run that fails before training leaves no run directory
    assert main(["train", "simclr-kmeans", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_seeds_report_mean_and_std(tmp_path):
    from corekit.runner import train_seeds

    final = train_seeds(rc.validate(tiny_recipe()), tmp_path, PLUGINS, seeds=2,
                        log=lambda _: None, progress=False)
    assert final["seeds"] == [0, 1] and len(final["runs"]) == 2
    nmis = [run["nmi"] for run in final["runs"]]
    assert final["nmi"] == pytest.approx(sum(nmis) / 2)
    assert final["nmi_std"] == pytest.approx(abs(nmis[0] - nmis[1]) / 2 ** 0.5)
    assert (tmp_path / "seed-1" / "final.json").exists()


def test_bf16_channels_last_grad_clip_memory_bank(tmp_path, evaluations):
    raw = tiny_recipe(train={"precision": "bf16", "grad_clip": 1.0,
                                 "memory_format": "channels_last"},
                      memory_bank={"source": "online:proj", "momentum": 0.5})
    raw["model"]["backbone"] = {"type": "small_cnn", "width": 8, "out_dim": 16}
    final = run_tiny(raw, tmp_path, PLUGINS)
    assert_above_chance(final, evaluations)
    bank = checkpoint.load(tmp_path / CKPT)["state"]["bank"]["features"]
    assert bank.shape == (256, 16)
    assert torch.allclose(bank.norm(dim=1), torch.ones(256), atol=1e-5)


def test_grad_clip_scales_the_step_gradient_down_to_the_clip_norm(tmp_path):
    """``train.grad_clip``: on a step whose gradient norm is far above it, the gradients the
    optimizer steps with (left in ``.grad`` after ``train_step``) are the raw ones scaled by
    clip / (norm + 1e-6), so their global norm is the clip (``clip_grad_norm_``). The raw
    gradients are read with tensor hooks on the online parameters during backward."""
    from corekit.composer import compose
    from corekit.engine.trainer import StageTrainer

    clip = 0.01
    cpu = torch.device("cpu")
    stage = rc.validate(tiny_recipe(train={"grad_clip": clip})).stages[0]
    data = load_dataset("digits")
    c = compose(PLUGINS, stage, lambda name: data, cpu, None, 3)
    trainer = StageTrainer(c, tmp_path, cpu, None, 0, lambda _: None, progress=False)
    params = [p for p in c.model.online.parameters() if p.requires_grad]
    raw: dict[int, torch.Tensor] = {}
    for i, param in enumerate(params):
        param.register_hook(lambda grad, i=i: raw.__setitem__(i, grad.detach().clone()))
    indices = torch.arange(64)
    trainer.train_step(indices, data.batch(indices), 0, torch.Generator().manual_seed(0))
    assert sorted(raw) == list(range(len(params)))
    before = torch.linalg.vector_norm(torch.stack([g.norm() for g in raw.values()]))
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    assert before > 10 * clip  # clipping binds on this step
    assert after.item() == pytest.approx(clip, rel=1e-4)
    scale = clip / (before + 1e-6)
    for i, param in enumerate(params):
        assert torch.allclose(param.grad, raw[i] * scale, rtol=1e-4, atol=1e-9), i


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic({"epoch": 1}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        checkpoint.save_atomic({"epoch": 2}, path)
    assert checkpoint.load(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(TrainingError, match="cannot be read"):
        checkpoint.load(tmp_path / "checkpoint.pt")


def test_cli_listings(capsys):
    assert main(["components", "clusterer"]) == 0
    out = capsys.readouterr().out
    assert "core.kmeans" in out and "core.spherical_kmeans" in out
    assert main(["components", "loss"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("loss components:\n") and "losss" not in out
    assert main(["components"]) == 0
    headers = [line for line in capsys.readouterr().out.splitlines() if line.endswith(":")]
    assert "state components:" in headers and "need components:" in headers
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "core.simclr-kmeans" in listing
    hadis = next((line for line in listing.splitlines() if "hadis.hadis " in line), None)
    if hadis is not None:  # hadis inherits propos's digits and mnist presets
        assert "digits" in hadis and "mnist" in hadis
    assert main(["components", "lossez"]) == 2


def test_per_batch_estep_updates_pseudo_labels(tmp_path):
    raw = tiny_recipe(train={"epochs": 2},
                      clusterer={"type": "toy.online_centroids", "every": 0,
                                 "before_training": True, "per_batch": True,
                                 "features": "online:proj"})
    raw["clusterer"].pop("n_init")
    stage = rc.validate(raw).stages[0]
    from corekit.composer import compose
    from corekit.engine.trainer import StageTrainer
    from corekit.runner import DataCache

    cache = DataCache(torch.device("cpu"))
    composed = compose(PLUGINS, stage, lambda n: cache(n, 256), torch.device("cpu"))
    StageTrainer(composed, tmp_path, torch.device("cpu"), None, 0, lambda _: None,
                 progress=False).run()
    assert composed.clusterer.updates == 6 and composed.pseudo.ready
    raw["clusterer"]["type"] = "kmeans"
    with pytest.raises(Exception, match="no update"):
        run_tiny(raw, tmp_path / "x", PLUGINS)


def test_resumed_epoch_is_in_metrics_once(tmp_path):
    """A run killed after its epoch-2 record but before the epoch-2 checkpoint re-runs epoch
    2 on resume: metrics.jsonl keeps one line per epoch (the re-run one)."""
    raw = tiny_recipe(train={"epochs": 3})
    run_tiny(rc.merge(raw, {"train": {"epochs": 1}}), tmp_path, PLUGINS)
    log = tmp_path / "metrics.jsonl"
    stale = json.loads(log.read_text().splitlines()[0]) | {"epoch": 2, "loss": -1.0}
    log.write_text(log.read_text() + json.dumps(stale) + "\n")  # the killed run's epoch 2
    train(rc.validate(raw), tmp_path, PLUGINS, resume=True, log=lambda _: None,
          progress=False)
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[1]["loss"] != -1.0


@pytest.mark.parametrize("assign", ["head:cluster", "clusterer"])
def test_the_final_evaluation_and_assignments_share_one_pass_over_the_set(assign, tmp_path,
                                                                          monkeypatch):
    """Features (or head outputs) of the training set are computed once per (weights, part):
    the last evaluation and ``assignments.csv`` reuse them."""
    from corekit.engine.trainer import StageTrainer

    passes: list[tuple[int, str]] = []
    features = StageTrainer.features

    def counted(self, spec, data):
        passes.append((self.global_step, spec))
        return features(self, spec, data)

    monkeypatch.setattr(StageTrainer, "features", counted)
    raw = tiny_recipe(model={"heads": {"cluster": {"type": "cluster_head", "input": "backbone"}}},
                      losses={"entropy": {"type": "batch_marginal_entropy", "head": "cluster"}},
                      eval={"assign": assign})
    run_tiny(raw, tmp_path, PLUGINS)
    assert (tmp_path / "assignments.csv").exists() and passes
    assert len(passes) == len(set(passes)), passes
