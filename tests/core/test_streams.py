"""Batch streams (``train.streams``): named parts of each step's batch with their own batch
size, order and views, a stream over a targets state's rows, one forward over several streams'
views (``train.concat``), and the recipe errors of each."""

from __future__ import annotations

import copy

import pytest
import torch

from corekit import recipe as rc
from corekit.engine.trainer import epoch_steps
from corekit.errors import RecipeError
from corekit.state import LabelRows
from corekit.testing import composition_problems, run_tiny, tiny_recipe, tiny_trainer

STREAMS = {
    "model": {"backbone": {"type": "mlp", "hidden": 64, "out_dim": 32},
              "heads": {"cluster": {"type": "cluster_head", "input": "backbone"}}},
    "augment": {"views": {"weak": {"type": "weak"}, "strong": {"type": "simclr"}}},
    "state": {"reliable": {"type": "targets"}},
    "pseudo_labeler": {
        "graph": {"type": "cluster", "clusterer": {"type": "kmeans", "n_init": 1},
                  "inputs": {"features": "online:backbone"}, "writes": "reliable",
                  "every": 0, "keep": 0.25},
        "confident": {"type": "confidence_threshold", "head": "cluster", "threshold": 0.0,
                      "view": "weak"}},
    "losses": {
        "labelled": {"type": "cross_entropy", "head": "cluster", "targets": "reliable",
                     "view": "weak", "stream": "labelled"},
        "unlabelled": {"type": "cross_entropy", "head": "cluster", "targets": "confident",
                       "view": "strong", "stream": "unlabelled", "reduction": "batch"}},
    "clusterer": None,
    "train": {"epochs": 2, "steps_per_epoch": 3,
              "streams": {"labelled": {"batch_size": 8, "rows": "reliable",
                                       "draw": "replacement", "views": ["weak"]},
                          "unlabelled": {"batch_size": 24, "views": ["weak", "strong"]}},
              "concat": ["labelled:weak", "unlabelled:weak", "unlabelled:strong"]},
    "eval": {"assign": "head:cluster"},
}


def _raw(**train):
    raw = {**tiny_recipe(), **copy.deepcopy(STREAMS)}
    raw["train"] = rc.merge(raw["train"], train)
    return {k: v for k, v in raw.items() if v is not None}




def _step(trainer, epoch=0):
    generator = torch.Generator().manual_seed(0)
    trainer.label("graph", 0)
    batch = next(trainer.epoch_batches(generator))
    views = {name: trainer.views(part.images, trainer.streams[name].views)
             for name, part in batch.items()}
    return batch, trainer.make_streams_step(batch, views, epoch)


def test_each_stream_has_its_own_batch_size_and_views(plugins, tmp_path):
    trainer = tiny_trainer(plugins, _raw(concat=[]), tmp_path)
    batch, step = _step(trainer)
    labelled, unlabelled = step.stream("labelled"), step.stream("unlabelled")
    assert step is labelled and step.name == "labelled"
    assert len(labelled.indices) == 8 and len(unlabelled.indices) == 24
    assert list(labelled.views) == ["weak"] and list(unlabelled.views) == ["weak", "strong"]
    assert torch.equal(unlabelled.indices, batch["unlabelled"].indices)
    with pytest.raises(KeyError, match="did you mean 'unlabelled'"):
        step.stream("unlabeled")


def test_a_rows_stream_walks_the_rows_and_reads_their_own_labels(plugins, tmp_path):
    trainer = tiny_trainer(plugins, _raw(concat=[], steps_per_epoch=5,
                                     streams={"labelled": {"draw": "shuffle",
                                                           "batch_size": 4}}), tmp_path)
    rows = LabelRows.of(torch.tensor([3, 3, 7]), torch.tensor([1, 2, 0]))
    trainer.composed.state["reliable"].write(rows)
    walk = trainer._stream_walk("labelled", trainer.streams["labelled"], 5,
                                torch.Generator().manual_seed(0))
    # 20 draws of 3 rows: fresh permutations, each row 6 or 7 times, image 3 with both labels
    pairs = list(zip(walk.order.tolist(), walk.label.tolist(), strict=True))
    assert sorted(set(pairs)) == [(3, 1), (3, 2), (7, 0)]
    assert all(6 <= pairs.count(p) <= 7 for p in set(pairs))
    batch = walk.batch(trainer.composed.train_set, 0)
    step = trainer.make_streams_step(
        {"labelled": batch, "unlabelled": next(iter(trainer.epoch_batches(
            torch.Generator().manual_seed(1))))["unlabelled"]},
        {"labelled": trainer.views(batch.images, ["weak"]),
         "unlabelled": trainer.views(batch.images, ["weak", "strong"])}, 0)
    given = step.stream("labelled").targets("reliable")
    assert given.labels.tolist() == walk.label[:4].tolist() and given.mask.all()


def test_concat_runs_one_forward_over_the_streams_views(plugins, tmp_path):
    trainer = tiny_trainer(plugins, _raw(), tmp_path)
    _, step = _step(trainer)
    calls: list[int] = []
    network = trainer.composed.model.online
    network.part("backbone").register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    weak = step.stream("labelled").output("cluster", "weak")
    strong = step.stream("unlabelled").output("cluster", "strong")
    step.stream("unlabelled").output("cluster", "weak")
    assert calls == [8 + 24 + 24]
    together = torch.cat([step.stream("labelled").views["weak"],
                          step.stream("unlabelled").views["weak"],
                          step.stream("unlabelled").views["strong"]])
    with torch.no_grad():
        whole = network.compute("cluster", together, {})
    assert torch.allclose(weak, whole[:8]) and torch.allclose(strong, whole[32:])


def test_concat_batchnorm_statistics_come_from_every_member(plugins, tmp_path):
    raw = _raw()
    raw["model"]["backbone"] = {"type": "small_cnn", "width": 8, "out_dim": 16}
    trainer = tiny_trainer(plugins, raw, tmp_path)
    bn = next(m for m in trainer.composed.model.online.modules()
              if isinstance(m, torch.nn.BatchNorm2d))
    seen: list[int] = []
    _, step = _step(trainer)
    bn.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    step.stream("labelled").output("cluster", "weak")
    assert seen == [56]


def test_a_stream_recipe_trains_end_to_end(plugins, tmp_path):
    final = run_tiny(_raw(), tmp_path / "run", plugins)
    assert "nmi" in final
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert '"labelled"' in metrics and '"unlabelled"' in metrics


def test_steps_of_an_epoch_with_streams():
    train = rc.validate(_raw(steps_per_epoch=None)).stages[0].train
    assert epoch_steps(train, 240) == 240 // 24  # the first stream that walks the images
    raw = _raw(steps_per_epoch=None)
    del raw["train"]["streams"]["unlabelled"]
    with pytest.raises(RecipeError, match="train.steps_per_epoch"):
        epoch_steps(rc.validate(raw).stages[0].train, 240)


# -- bad input ---------------------------------------------------------------------------------
def test_a_stream_view_or_rows_no_table_defines_is_refused(plugins):
    raw = _raw(concat=[], streams={"labelled": {"views": ["waek"], "rows": "relaible"}})
    message = composition_problems(plugins, raw)
    assert "train.streams.labelled.views: augment.views: no view 'waek'; did you mean 'weak'" \
        in message
    assert "train.streams.labelled.rows: 'relaible' is not a state of type 'targets'" in message


def test_a_concat_entry_naming_no_stream_or_a_view_it_lacks_is_refused(plugins):
    message = composition_problems(plugins, _raw(concat=["labeled:weak", "labelled:strong"]))
    assert "train.concat[0]: 'labeled:weak' names no stream" in message
    assert "did you mean 'labelled'" in message
    assert "train.concat[1]: stream 'labelled' does not get view 'strong'" in message


def test_a_batch_larger_than_the_set_and_a_loss_reading_no_stream_are_refused(plugins):
    raw = _raw(streams={"unlabelled": {"batch_size": 300}})
    raw["losses"]["unlabelled"]["stream"] = "unlabeled"
    message = composition_problems(plugins, raw)
    assert "train.streams.unlabelled.batch_size: 300 images a step from a set of 256" in message
    assert "reads stream 'unlabeled'" in message and "did you mean 'unlabelled'" in message


def test_check_describes_the_streams():
    from corekit.composer import describe_streams

    assert describe_streams(rc.validate(_raw()).stages[0].train) == (
        "labelled: 8 rows of reliable (weak), unlabelled: 24 (weak, strong); concat "
        "labelled:weak, unlabelled:weak, unlabelled:strong")
    assert describe_streams(rc.validate(tiny_recipe()).stages[0].train) == "main: 64"
