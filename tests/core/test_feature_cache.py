"""The feature cache: a frozen part's features are extracted once per (weights, images,
transform) and reused by the evaluation, by head training (``Step.prefill``) and by predict,
in memory and from disk; an unreadable entry is a miss."""

from __future__ import annotations

import attrs
import pytest
import torch

from corekit import feature_cache as fc
from corekit import recipe as rc
from corekit.components.augment import eval_transform
from corekit.data import load_dataset
from corekit.predict import load_trained, predict
from corekit.testing import run_tiny, tiny_recipe, tiny_trainer

FROZEN_HEAD = {
    "model": {"backbone": {"type": "mlp", "hidden": 64, "out_dim": 32},
              "heads": {"cluster": {"type": "cluster_head", "input": "backbone"}}},
    "augment": {"type": "identity", "views": 2},
    "losses": {"instance": {"type": "batch_marginal_entropy", "head": "cluster"}},
    "clusterer": None,
    "train": {"epochs": 2, "freeze": ["backbone"]},
    "eval": {"assign": "head:cluster"},
}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """A cache folder of this test's own (and so an empty memory cache)."""
    monkeypatch.setenv("DEEPCLUST_CACHE_DIR", str(tmp_path / "cache"))


def _recipe(**sections):
    """The tiny recipe with ``sections``: ``model`` and ``augment`` replace its tables, the
    others are merged; None drops a table."""
    whole = {k: sections.pop(k) for k in ("model", "augment") if k in sections}
    raw = tiny_recipe(**sections) | whole
    return {k: v for k, v in raw.items() if v is not None}


def _digits(seed: int):
    """The 256 digits the tiny recipe trains on (``data.subset``, as the runner draws them)."""
    return load_dataset("digits").subset(256, seed)


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    return calls


def test_features_of_a_zero_epoch_stage_are_extracted_once_then_read_from_memory_and_disk(
        plugins, tmp_path):
    trainer = tiny_trainer(plugins, _recipe(train={"epochs": 0}, losses=None), tmp_path)
    calls = _count_calls(trainer.composed.model.online.part("backbone"))
    data = trainer.composed.train_set
    first = trainer.features("online:backbone", data)
    ran = sum(calls)
    assert ran == len(data)
    second = trainer.features("online:backbone", data)
    assert sum(calls) == ran and torch.equal(first, second)
    fc.feature_cache().memory.clear()
    third = trainer.features("online:backbone", data)
    assert sum(calls) == ran and torch.equal(first, third)
    assert len(list((tmp_path / "cache" / fc.FOLDER).glob("*.pt"))) == 1


def test_a_trained_part_is_never_cached(plugins, tmp_path):
    trainer = tiny_trainer(plugins, _recipe(), tmp_path)
    calls = _count_calls(trainer.composed.model.online.part("backbone"))
    data = trainer.composed.train_set
    trainer.features("online:backbone", data)
    trainer.features("online:backbone", data)
    assert sum(calls) == 2 * len(data)
    assert fc.fixed_part(trainer.composed.model.online, "backbone", trained=True) is None


def test_the_key_changes_with_weights_images_transform_and_precision(plugins, tmp_path):
    trainer = tiny_trainer(plugins, _recipe(train={"epochs": 0}, losses=None), tmp_path)
    net, data = trainer.composed.model.online, trainer.composed.train_set
    transform = trainer.composed.eval_transform
    key = fc.feature_key(net, "backbone", data, transform, None)
    assert fc.feature_key(net, "backbone", data, transform, None) == key
    changed = data.images.clone()
    changed[0, 0, 0, 0] ^= 1
    assert fc.feature_key(net, "backbone", attrs.evolve(data, images=changed), transform,
                          None) != key
    assert fc.feature_key(net, "backbone", data, transform, torch.bfloat16) != key
    assert fc.feature_key(net, "backbone", data, eval_transform(transform.size + 1,
                          data.channels), None) != key
    with torch.no_grad():
        next(net.part("backbone").parameters()).view(-1)[0] += 1e-3
    assert fc.feature_key(net, "backbone", data, transform, None) != key


@pytest.mark.parametrize("garbage", [b"not a torch file", None])
def test_an_unreadable_or_mis_sized_entry_is_a_miss(tmp_path, garbage):
    cache = fc.FeatureCache(tmp_path)
    if garbage is None:
        torch.save(torch.zeros(3, 2), tmp_path / "k.pt")  # 3 rows, 5 expected
    else:
        (tmp_path / "k.pt").write_bytes(garbage)
    assert cache.get("k", 5) is None
    fresh = cache.fetch("k", 5, lambda: torch.ones(5, 2))
    assert torch.equal(fresh, torch.ones(5, 2))
    assert torch.equal(fc.FeatureCache(tmp_path).get("k", 5), torch.ones(5, 2))


def test_an_unwritable_cache_folder_is_skipped(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = fc.FeatureCache(blocker / "sub")
    assert torch.equal(cache.fetch("k", 2, lambda: torch.ones(2, 1)), torch.ones(2, 1))


def test_a_frozen_backbone_never_runs_in_training_and_the_step_reads_its_cached_features(
        plugins, tmp_path):
    trainer = tiny_trainer(plugins, _recipe(**FROZEN_HEAD), tmp_path)
    backbone = trainer.composed.model.online.part("backbone")
    calls = _count_calls(backbone)
    data = trainer.composed.train_set
    trainer.run()
    assert sum(calls) == len(data)  # the one extraction: no training step, no evaluation
    indices = torch.arange(5)
    images = data.batch(indices)
    step = trainer.make_step(indices, trainer.views(images), 0)
    with torch.no_grad():
        expected = backbone.eval()(trainer.composed.eval_transform(images))
    assert sum(calls) == len(data) + 5
    torch.testing.assert_close(step.output("backbone", 1), expected)


def test_views_that_are_not_the_eval_transform_get_no_prefill(plugins, tmp_path):
    raw = _recipe(**(FROZEN_HEAD | {"augment": {"type": "simclr", "views": 2,
                                                 "crop_scale": [0.5, 1.0]}}))
    trainer = tiny_trainer(plugins, raw, tmp_path)
    calls = _count_calls(trainer.composed.model.online.part("backbone"))
    indices = torch.arange(4)
    step = trainer.make_step(indices, trainer.views(trainer.composed.train_set.batch(indices)), 0)
    assert not calls
    step.output("cluster", 0)
    assert calls == [4]


def test_predict_reads_the_frozen_features_of_the_run_from_the_cache(plugins, tmp_path):
    run_tiny(_recipe(**FROZEN_HEAD), tmp_path / "run", plugins)
    model = load_trained(tmp_path / "run", plugins)
    calls = _count_calls(model.network.part("backbone"))
    predict(model, _digits(rc.validate(_recipe(**FROZEN_HEAD)).stages[0].train.seed))
    assert not calls
