"""Dataset-level labelers (``[pseudo_labeler.NAME]`` with ``inputs`` and ``writes``), the
``targets`` state they write, per-step labelers read through ``step.targets``, and the
``cross_entropy`` loss over either; with the recipe errors of each."""

from __future__ import annotations

import copy

import pytest
import torch

from corekit import recipe as rc
from corekit.components.dataset_labelers import ClusterLabels
from corekit.components.losses import target_cross_entropy
from corekit.composer import compose
from corekit.data import load_dataset
from corekit.handoff import StageOutputs
from corekit.hookspecs import hookimpl
from corekit.state import LabelRows, PseudoLabels, Targets
from corekit.testing import composition_problems, plugin_set, run_tiny, tiny_recipe, tiny_trainer

LABELLED_HEAD = {
    "model": {"backbone": {"type": "mlp", "hidden": 64, "out_dim": 32},
              "heads": {"cluster": {"type": "cluster_head", "input": "backbone"}}},
    "augment": {"type": "identity", "views": 1},
    "losses": {"ce": {"type": "cross_entropy", "head": "cluster", "targets": "targets"}},
    "state": {"targets": {"type": "targets"}},
    "pseudo_labeler": {"graph": {"type": "cluster", "clusterer": {"type": "kmeans", "n_init": 1},
                                 "inputs": {"features": "online:backbone"},
                                 "writes": "targets", "every": 0, "keep": 0.5}},
    "clusterer": None,
    "train": {"epochs": 2, "freeze": ["backbone"]},
    "eval": {"assign": "head:cluster"},
}


def _raw(**sections):
    """The tiny recipe with ``LABELLED_HEAD``'s tables; ``sections`` replace ``pseudo_labeler``
    and ``losses`` whole and are merged into the other tables."""
    raw = {**tiny_recipe(), **copy.deepcopy(LABELLED_HEAD)}
    for key, value in sections.items():
        raw[key] = value if key in ("pseudo_labeler", "losses") else rc.merge(raw[key], value)
    return {k: v for k, v in raw.items() if v is not None}




# -- the targets state ------------------------------------------------------------------------
def test_targets_rows_read_per_batch_with_the_last_row_of_a_repeated_index_counting():
    targets = Targets(n_images=5, n_clusters=3)
    assert not targets.ready
    targets.write(LabelRows.of(torch.tensor([0, 2, 2, 4]), torch.tensor([1, 0, 2, 1]),
                               torch.tensor([1.0, 0.5, 0.7, 0.9])))
    batch = targets.of(torch.tensor([4, 1, 2, 0]))
    assert targets.ready
    assert batch.labels.tolist() == [1, -1, 2, 1]
    assert batch.mask.tolist() == [True, False, True, True]
    assert batch.weight.tolist() == pytest.approx([0.9, 0.0, 0.7, 1.0])


def test_targets_round_trip_through_a_state_dict_keeps_repeated_rows():
    targets = Targets(n_images=4, n_clusters=2)
    targets.write(LabelRows.of(torch.tensor([3, 3, 1]), torch.tensor([0, 1, 1])))
    loaded = Targets(n_images=4, n_clusters=2)
    loaded.load_state_dict(targets.state_dict())
    assert loaded.ready and loaded.index.tolist() == [3, 3, 1]
    assert loaded.of(torch.tensor([3])).labels.tolist() == [1]
    empty = Targets(n_images=4, n_clusters=2)
    empty.load_state_dict(Targets(n_images=4, n_clusters=2).state_dict())
    assert not empty.ready


def test_targets_refuse_an_index_or_label_out_of_range():
    targets = Targets(n_images=4, n_clusters=2)
    with pytest.raises(Exception, match=r"\[0, 4\)"):
        targets.write(LabelRows.of(torch.tensor([4]), torch.tensor([0])))
    with pytest.raises(Exception, match=r"\[0, 2\)"):
        targets.write(LabelRows.of(torch.tensor([0]), torch.tensor([2])))


def test_pseudo_labels_are_ready_once_written_even_with_unlabelled_images():
    pseudo = PseudoLabels(n_images=3, n_clusters=2)
    assert not pseudo.ready
    pseudo.write(torch.tensor([0, -1, 1]))
    assert pseudo.ready
    old_format = {"labels": torch.tensor([0, 1, 1]), "centroids": torch.zeros(0)}
    loaded = PseudoLabels(n_images=3, n_clusters=2)
    loaded.load_state_dict(old_format, strict=False)
    assert loaded.ready and loaded.labels.tolist() == [0, 1, 1]


# -- the cluster labeler and the loss ---------------------------------------------------------
class _FixedClusterer:
    n_clusters = 2

    def fit(self, features):
        from corekit.components.clusterers import ClusterResult

        labels = (features[:, 0] > 0).long()
        centroids = torch.stack([features[labels == k].mean(0) for k in range(2)])
        return ClusterResult(labels, centroids, 0.0)


def test_cluster_labeler_keeps_the_most_central_fraction_of_each_cluster():
    # cluster 1 (x > 0): cosines to its centre 1.00, 0.80, 1.00, 0.85 -> keeps 2 and 0;
    # cluster 0 (x < 0): 0.97, 0.99, 0.90, 0.54 -> keeps 5 and 4
    features = torch.tensor([[1.0, 0.0], [1.0, 0.9], [1.0, 0.1], [1.0, -0.5],
                             [-1.0, 0.0], [-1.0, 0.1], [-1.0, -0.2], [-1.0, 3.0]])
    rows = ClusterLabels(_FixedClusterer(), keep=0.5).label({"features": features})
    kept = dict(zip(rows.index.tolist(), rows.label.tolist(), strict=True))
    assert kept == {0: 1, 2: 1, 4: 0, 5: 0}


def test_cross_entropy_divides_by_the_batch_or_by_the_labelled_weight():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels, weight = torch.tensor([0, 1, -1]), torch.tensor([1.0, 0.5, 0.0])
    nll = -torch.log_softmax(logits, 1)
    summed = nll[0, 0] + 0.5 * nll[1, 1]
    batch = target_cross_entropy(logits, labels, weight, False, "batch")
    labelled = target_cross_entropy(logits, labels, weight, False, "labelled")
    assert batch.item() == pytest.approx(summed.item() / 3)
    assert labelled.item() == pytest.approx(summed.item() / 1.5)
    probs = target_cross_entropy(logits.softmax(1), labels, weight, True, "labelled")
    assert probs.item() == pytest.approx(labelled.item(), rel=1e-5)


# -- wired into a stage -----------------------------------------------------------------------
def test_a_dataset_labeler_writes_its_targets_before_training_and_the_head_learns_them(
        plugins, tmp_path):
    raw = _raw(train={"epochs": 40, "steps_per_epoch": 4, "batch_size": 64,
                      "optimizer": {"lr": 1e-2}})
    trainer = tiny_trainer(plugins, raw, tmp_path)
    calls = []
    original = trainer.label
    trainer.label = lambda name, epoch: calls.append(epoch) or original(name, epoch)
    trainer.run()
    targets = trainer.composed.state["targets"]
    assert calls == [0]  # every = 0: before training only
    assert targets.ready and 0.45 * 256 <= len(targets.index) <= 0.55 * 256
    predicted = trainer.assignments()[targets.index]
    agreement = (predicted == targets.label).float().mean().item()
    assert agreement > 0.7  # 0.16 untrained, 0.87 here


def test_every_and_stage_end_decide_when_a_labeler_runs(plugins, tmp_path):
    ran = {}
    for when, every in (("epochs", 2), ("stage_end", 1)):
        labeler = {**LABELLED_HEAD["pseudo_labeler"]["graph"], "every": every, "when": when}
        raw = _raw(pseudo_labeler={"graph": labeler},
                   losses={"entropy": {"type": "batch_marginal_entropy", "head": "cluster",
                                       "views": 1}},
                   train={"epochs": 5, "steps_per_epoch": 1})
        trainer = tiny_trainer(plugins, raw, tmp_path / when)
        epochs = []
        trainer.label = lambda name, epoch, out=epochs: out.append(epoch)
        trainer.run()
        ran[when] = epochs
    assert ran == {"epochs": [0, 2, 4], "stage_end": [5]}


def test_a_sample_labels_a_random_subset_that_changes_with_the_epoch(plugins, tmp_path):
    labeler = {**LABELLED_HEAD["pseudo_labeler"]["graph"], "sample": 100, "keep": 1.0}
    trainer = tiny_trainer(plugins, _raw(pseudo_labeler={"graph": labeler}), tmp_path)
    first, again = trainer.label("graph", 0), trainer.label("graph", 0)
    other = trainer.label("graph", 1)
    assert len(first.index) == 100 and len(set(first.index.tolist())) == 100
    assert torch.equal(first.index, again.index)
    assert not torch.equal(first.index.sort().values, other.index.sort().values)


def test_a_per_step_labeler_is_read_as_step_targets(plugins, tmp_path):
    raw = _raw(pseudo_labeler={"confident": {"type": "confidence_threshold", "head": "cluster",
                                             "threshold": 0.0}},
               losses={"ce": {"type": "cross_entropy", "head": "cluster",
                              "targets": "confident"}})
    trainer = tiny_trainer(plugins, raw, tmp_path)
    data = trainer.composed.train_set
    indices = torch.arange(8)
    step = trainer.make_step(indices, trainer.views(data.images[indices]), 0)
    given = step.targets("confident")
    assert given.mask.all()
    assert torch.equal(given.labels, step.output("cluster").argmax(1))
    assert step.targets("confident") is given  # once per step


# -- bad input ---------------------------------------------------------------------------------
def test_labeler_input_naming_no_part_is_refused_with_its_key(plugins):
    labeler = {**LABELLED_HEAD["pseudo_labeler"]["graph"],
               "inputs": {"features": "online:backbon"}}
    message = composition_problems(plugins, _raw(pseudo_labeler={"graph": labeler}))
    assert "pseudo_labeler.graph.inputs.features" in message and "'backbone'" in message


class _ProbsReader:
    """A dataset-level labeler that reads probabilities (a stack of heads too with
    ``stacked``); never run."""

    reads = {"probs": "probs"}

    def __init__(self, stacked: bool = False) -> None:
        self.stacked_inputs = ("probs",) if stacked else ()

    def label(self, inputs):
        raise AssertionError("never run")


class _ProbsReaderPlugin:
    """A module-like plugin registering ``probs_reader``."""

    @staticmethod
    @hookimpl
    def register_pseudo_labelers(register):
        register("probs_reader", _ProbsReader)


def test_labeler_reading_probs_from_logits_is_refused():
    plugins = plugin_set(_ProbsReaderPlugin, name="probs")
    message = composition_problems(plugins, _raw(pseudo_labeler={"graph": {
        "type": "probs_reader", "inputs": {"probs": "online:backbone"}, "writes": "targets"}}))
    assert "pseudo_labeler.graph.inputs.probs" in message and "as probs" in message


def test_sample_larger_than_the_set_and_a_missing_writes_are_refused(plugins):
    labeler = {k: v for k, v in LABELLED_HEAD["pseudo_labeler"]["graph"].items()
               if k != "writes"}
    raw = _raw(pseudo_labeler={"graph": {**labeler, "sample": 300}})
    message = composition_problems(plugins, raw)
    assert "pseudo_labeler.graph.sample: 300 images of a set of 256" in message
    assert "pseudo_labeler.graph.writes" in message


def test_a_per_step_labeler_with_dataset_keys_and_a_loss_reading_unknown_targets(plugins):
    raw = _raw(pseudo_labeler={"confident": {"type": "confidence_threshold", "head": "cluster",
                                             "writes": "targets"}},
               losses={"ce": {"type": "cross_entropy", "head": "cluster",
                              "targets": "confidnet"}})
    message = composition_problems(plugins, raw)
    assert "pseudo_labeler.confident.writes: 'confidence_threshold' labels each step" in message
    assert "reads targets 'confidnet'" in message and "did you mean 'confident'" in message


def test_a_loss_reading_a_dataset_labeler_by_its_own_name_is_told_to_read_its_state(plugins):
    raw = _raw(losses={"ce": {"type": "cross_entropy", "head": "cluster", "targets": "graph"}})
    assert "read targets = 'targets'" in composition_problems(plugins, raw)


def test_the_targets_are_saved_in_the_stage_outputs_and_carried_by_init_from(plugins, tmp_path):
    run_tiny(_raw(), tmp_path / "first", plugins)
    saved = StageOutputs.load(tmp_path / "first" / "stages" / "main").state["targets"]
    assert bool(saved["written"]) and len(saved["index"]) > 0
    second = _raw(pseudo_labeler={"graph": {**LABELLED_HEAD["pseudo_labeler"]["graph"],
                                            "when": "stage_end"}},
                  state={"targets": {"init_from": "first:targets"}})
    stage = rc.validate(second).stages[0]
    data = load_dataset("digits").subset(256, stage.train.seed)
    composed = compose(plugins, stage, lambda _name: data, torch.device("cpu"),
                       earlier={"first": StageOutputs.load(tmp_path / "first" / "stages"
                                                           / "main")})
    carried = composed.state["targets"]
    assert carried.ready and torch.equal(carried.index, saved["index"])


def test_the_labelers_clusterer_is_seeded_by_the_stage_seed_unless_its_table_sets_one(plugins,
                                                                                     tmp_path):
    seeded = tiny_trainer(plugins, _raw(train={"seed": 3}), tmp_path)
    assert seeded.composed.dataset_labelers["graph"].clusterer.seed == 3
    labeler = LABELLED_HEAD["pseudo_labeler"]["graph"]
    fixed = {**labeler, "clusterer": {**labeler["clusterer"], "seed": 7}}
    pinned = tiny_trainer(plugins, _raw(train={"seed": 3}, pseudo_labeler={"graph": fixed}),
                      tmp_path)
    assert pinned.composed.dataset_labelers["graph"].clusterer.seed == 7


def test_a_dataset_labeler_reads_its_inputs_through_the_named_view(plugins, tmp_path):
    labeler = {**LABELLED_HEAD["pseudo_labeler"]["graph"], "view": "noisy"}
    raw = _raw(pseudo_labeler={"graph": labeler},
               augment={"views": {"plain": {"type": "identity"},
                                  "noisy": {"type": "simclr", "crop_scale": [0.2, 0.5]}}})
    raw["augment"] = {k: v for k, v in raw["augment"].items() if k == "views"}
    trainer = tiny_trainer(plugins, raw, tmp_path)
    plain = trainer.labeler_input("online:backbone")
    through_view = trainer.labeler_input("online:backbone", "noisy")
    assert plain.shape == through_view.shape and not torch.allclose(plain, through_view)
    raw["pseudo_labeler"]["graph"]["view"] = "nosiy"
    assert "did you mean 'noisy'" in composition_problems(plugins, raw)


def test_a_sampled_labeler_sends_only_its_sample_through_the_view(plugins, tmp_path,
                                                                   monkeypatch):
    """A labeler with a view and a sample draws views of the sampled images alone (not of the
    whole set, then indexed), and its inputs line up with the rows it writes."""
    labeler = {**LABELLED_HEAD["pseudo_labeler"]["graph"], "view": "noisy", "sample": 100,
               "keep": 1.0}
    raw = _raw(pseudo_labeler={"graph": labeler},
               augment={"views": {"plain": {"type": "identity"},
                                  "noisy": {"type": "simclr", "crop_scale": [0.2, 0.5]}}})
    raw["augment"] = {k: v for k, v in raw["augment"].items() if k == "views"}
    trainer = tiny_trainer(plugins, raw, tmp_path)
    seen: list[int] = []
    trainer.composed.views["noisy"].register_forward_hook(
        lambda _module, args, _out: seen.append(len(args[0])))
    read: list[torch.Tensor] = []
    labeler_type = type(trainer.composed.dataset_labelers["graph"])
    real_label = labeler_type.label
    monkeypatch.setattr(labeler_type, "label", lambda self, inputs: (
        read.append(inputs["features"]), real_label(self, inputs))[1])
    rows = trainer.label("graph", 0)
    assert sum(seen) == 100 and len(trainer.composed.train_set) > 100
    assert read[0].shape[0] == 100 and len(rows.index) == 100
    plain = trainer.labeler_input("online:backbone", indices=rows.index)
    assert plain.shape == read[0].shape
    assert torch.equal(plain, trainer.labeler_input("online:backbone")[rows.index])


def test_a_per_step_labeler_takes_its_view_from_the_table(plugins, tmp_path):
    raw = _raw(pseudo_labeler={"confident": {"type": "confidence_threshold", "head": "cluster",
                                             "view": 1, "threshold": 0.0}},
               losses={"ce": {"type": "cross_entropy", "head": "cluster",
                              "targets": "confident"}},
               augment={"views": 2})
    trainer = tiny_trainer(plugins, raw, tmp_path)
    assert trainer.composed.step_labelers["confident"].view == 1


def test_check_names_each_labeler_and_when_it_runs(plugins, tmp_path):
    from corekit.composer import describe_labelers

    raw = _raw(pseudo_labeler={**LABELLED_HEAD["pseudo_labeler"],
                               "confident": {"type": "confidence_threshold", "head": "cluster"}})
    trainer = tiny_trainer(plugins, raw, tmp_path)
    assert describe_labelers(trainer.composed) == (
        "graph: cluster -> targets (before training), confident: confidence_threshold "
        "(per step)")


@pytest.mark.parametrize("stacked", [True, False])
def test_a_labeler_reads_a_stack_of_heads_only_where_it_says_so(tmp_path, stacked):
    plugins = plugin_set(_ProbsReaderPlugin, name="probs")
    raw = _raw(pseudo_labeler={"graph": {"type": "probs_reader", "stacked": stacked,
                                         "inputs": {"probs": "online:heads"},
                                         "writes": "targets"}},
               losses={"entropy": {"type": "batch_marginal_entropy", "head": "cluster",
                                   "views": 1}})
    raw["model"]["heads"]["heads"] = {"type": "stacked_cluster_head", "input": "backbone",
                                      "stack": 3}
    if stacked:
        assert tiny_trainer(plugins, raw, tmp_path).composed.dataset_labelers["graph"]
    else:
        assert "pseudo_labeler.graph.inputs.probs" in composition_problems(plugins, raw)
