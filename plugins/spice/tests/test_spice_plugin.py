"""The spice plugin as installed: registrations, the recipe on digits (all three stages), the
label-free rule and the bad inputs of issue 31 that are the plugin's."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import attrs
import pytest
import torch
from deepclust_spice import DoubleSoftmaxCE, SpiceMultiHead, SpicePrototypeLabeler

from corekit import TrainingError, metrics
from corekit import recipe as rc
from corekit.composer import compose
from corekit.data import load_dataset
from corekit.engine.trainer import StageTrainer
from corekit.plugins import Plugins
from corekit.runner import train
from corekit.testing import chance_level, load_only, record_evaluations

ROOT = Path(__file__).resolve().parents[3]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_only("spice")


def test_loads_through_its_entry_point(plugins: Plugins) -> None:
    info = plugins.plugin("spice")
    assert info is not None and info.status == "loaded", info
    assert info.distribution == "deepclust-plugin-spice"
    registry = plugins.registry
    assert registry.get("head", "spice_multi_head").obj is SpiceMultiHead
    assert registry.get("loss", "double_softmax_ce").obj is DoubleSoftmaxCE
    assert Path(registry.get("recipe", "spice").obj).is_file()


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["deepclust", "check", "spice", *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_check_composes_on_digits() -> None:
    assert check("--data", "digits").returncode == 0


@pytest.mark.skipif(not MNIST.is_dir(), reason="no MNIST folder")
def test_check_composes_on_mnist() -> None:
    out = check("--data", f"mnist:{MNIST}")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("override", "says"), [
    ("stages.self.pseudo_labeler.proto.n_s=1000", "pseudo_labeler.proto.n_s: 1000 exceeds"),
    ("stages.moco.state.queue.size=1000", "state.queue.size: 1000 is not a multiple"),
    ("stages.self.pseudo_labeler.proto.sample=5000", "pseudo_labeler.proto.sample: 5000"),
])
def test_bad_input_is_exit_2_naming_the_key(override: str, says: str) -> None:
    out = check("--data", "digits", "--set", override)
    assert out.returncode == 2 and says in out.stderr, out.stderr


def test_double_softmax_ce_on_logits_is_refused_at_compose() -> None:
    out = check("--data", "digits", "--set",
                'stages.self.model.heads.lg={type="cluster_head",input="backbone",'
                'output="logits"}', "--set", 'stages.self.losses.dsce.head="lg"')
    assert out.returncode == 2
    assert "loss 'dsce' (spice.double_softmax_ce) reads online:lg as probs" in out.stderr
    assert "produces logits" in out.stderr


def test_prototype_labeler_refuses_logits_and_n_s_over_n() -> None:
    labeler = SpicePrototypeLabeler(n_clusters=3)
    features = torch.randn(12, 4)
    with pytest.raises(Exception, match="must be probabilities"):
        labeler.label({"features": features, "probs": torch.randn(12, 3)})
    with pytest.raises(Exception, match="n_s = 20"):
        SpicePrototypeLabeler(3, n_s=20).label({"features": features,
                                                 "probs": torch.rand(12, 3).softmax(1)})


def test_stacked_rows_carry_the_head() -> None:
    """Labels ``h·K + k``: head 1's rows come after head 0's, offset by K."""
    features = torch.nn.functional.normalize(torch.randn(20, 4), dim=1)
    probs = torch.rand(20, 2, 3).softmax(dim=2)
    rows = SpicePrototypeLabeler(3).label({"features": features, "probs": probs.flatten(1)})
    assert len(rows.index) == 2 * 3 * 6
    assert rows.label[:18].max() < 3 and rows.label[18:].min() >= 3


def test_stacked_loss_is_the_mean_over_heads_of_each_heads_mean() -> None:
    """Eq. 5 per head, then the mean over heads: a head with 3 pairs weighs as much as a head
    with 1 (pooling all pairs into one mean would weigh head 0 three times as much)."""
    from deepclust_spice.double_softmax import double_softmax_ce, stacked_double_softmax_ce

    probs = torch.rand(3, 2, 4, generator=torch.Generator().manual_seed(0)).softmax(dim=2)
    image, head, label = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 0, 1]), \
        torch.tensor([1, 2, 3, 0])
    per_head = [double_softmax_ce(probs[image[:3], 0], label[:3]),
                double_softmax_ce(probs[:1, 1], label[3:])]
    assert stacked_double_softmax_ce(probs, image, head, label).item() == pytest.approx(
        (per_head[0] + per_head[1]).item() / 2, abs=1e-7)


class _Ctx:
    def __init__(self, state: dict) -> None:
        self.state, self.stage = state, "semi"


def test_empty_reliable_cluster_stops_stage_3_with_counts() -> None:
    from deepclust_spice.guard import ReliableGuard

    from corekit import LabelRows, Targets

    targets = Targets(10, 3)
    targets.write(LabelRows.of(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 2, 2])))
    with pytest.raises(TrainingError, match=r"cluster\(s\) \[1\] empty .*\[2, 0, 2\]"):
        ReliableGuard(3).on_stage_start(_Ctx({"reliable": targets}))
    targets.write(LabelRows.of(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])))
    ReliableGuard(3).on_stage_start(_Ctx({"reliable": targets}))


# -- the digits run: every stage trains ------------------------------------------------------
@pytest.fixture(scope="module")
def digits_run(plugins: Plugins, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits preset, trained once for the module on one intra-op thread. A module fixture
    runs before the function-scoped one-thread fixture of conftest.py, so without the explicit
    thread count the run took torch's default (2 on the 2-core CI machine, 1 under taskset)
    and its floating-point sums, and so its numbers, changed with the machine."""
    out = tmp_path_factory.mktemp("spice_digits")
    recipe = rc.resolve("spice", plugins.find_recipe, "digits")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lines: list[str] = []
    try:
        with pytest.MonkeyPatch.context() as patch:
            evaluations = record_evaluations(patch)
            train(recipe, out, plugins, log=lines.append, progress=False)
    finally:
        torch.set_num_threads(threads)
    torch.save(evaluations, out / "evaluations.pt")
    (out / "log.txt").write_text("\n".join(lines))
    return out


def test_digits_trains_all_three_stages(digits_run: Path) -> None:
    for stage in ("moco", "self", "semi"):
        assert (digits_run / "stages" / stage / "final.json").is_file(), stage
    final = json.loads((digits_run / "stages" / "semi" / "final.json").read_text())
    labels, pred, k = torch.load(digits_run / "evaluations.pt", weights_only=False)[-1]
    recomputed = metrics.evaluate(labels, pred, k, "geometric")  # eval.nmi_average (D11)
    for key in ("nmi", "acc", "ari"):
        assert final[key] == pytest.approx(recomputed[key], abs=1e-9), key
        assert final[key] > chance_level(labels, pred, k)[key] + 0.05, key


def test_digits_reliable_set_is_balanced(digits_run: Path) -> None:
    outputs = torch.load(digits_run / "stages" / "self" / "outputs.pt", weights_only=False)
    labels = outputs["state"]["reliable"]["label"]
    counts = torch.bincount(labels, minlength=10)
    assert counts.min() > 0 and bool((counts == counts[0]).all()), counts


def test_digits_selection_is_recorded_without_labels(digits_run: Path) -> None:
    record = json.loads((digits_run / "stages" / "self" / "selection.json").read_text())
    assert record["labels_read"] is False and 0 <= record["head"] < 10
    best = min(min(h["scores"]) for h in record["history"])
    assert record["score"] == pytest.approx(best, abs=1e-5)
    epoch = next(h for h in record["history"] if h["epoch"] == record["epoch"])
    assert min(epoch["scores"]) == pytest.approx(best, abs=1e-5)
    logged = re.findall(r"spice selection: head (\d+) after epoch (\d+)",
                        (digits_run / "log.txt").read_text())
    assert logged[-1] == (str(record["head"]), str(record["epoch"]))  # one epoch count


# -- label-free: the ground truth changes nothing --------------------------------------------
def self_stage(plugins: Plugins, labels: torch.Tensor | None, out: Path):
    recipe = rc.resolve("spice", plugins.find_recipe, "digits",
                        ["stages.self.train.epochs=3", "stages.self.train.eval_every=0"])
    stage = next(s for s in recipe.stages if s.name == "self")
    data = load_dataset("digits")
    data = attrs.evolve(data, labels=labels)
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    composed = compose(plugins, stage, lambda _name: data, cpu)
    StageTrainer(composed, out, cpu, None, 1, lambda _: None, progress=False).run()
    return composed.state


def test_relabelling_the_ground_truth_changes_nothing(plugins: Plugins, tmp_path: Path) -> None:
    truth = load_dataset("digits").labels
    shuffled = truth[torch.randperm(len(truth), generator=torch.Generator().manual_seed(1))]
    a = self_stage(plugins, truth, tmp_path / "a")
    b = self_stage(plugins, (shuffled + 3) % 10, tmp_path / "b")
    for key in ("index", "epoch", "score"):
        assert torch.equal(getattr(a["select"], key), getattr(b["select"], key)), key
    assert torch.equal(a["reliable"].rows().index, b["reliable"].rows().index)
    assert torch.equal(a["reliable"].rows().label, b["reliable"].rows().label)


@pytest.mark.parametrize("chunk", [7, 64, 4096])
def test_nearest_neighbours_follow_a_stable_sort_ties_included(chunk: int) -> None:
    """The top-k path returns a full stable descending sort's first columns: duplicate rows
    (equal similarities across the cut) and coarse features (ties everywhere) included."""
    from deepclust_spice import nearest_neighbours

    gen = torch.Generator().manual_seed(0)
    fine = torch.nn.functional.normalize(torch.randn(300, 8, generator=gen), dim=1)
    coarse = torch.nn.functional.normalize(
        torch.randint(1, 3, (200, 3), generator=gen).float(), dim=1)
    for features in (torch.cat([fine, fine[:40]]), coarse):
        full = (features @ features.T).sort(dim=1, descending=True, stable=True).indices
        assert torch.equal(nearest_neighbours(features, 20, chunk), full[:, :20])
