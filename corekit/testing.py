"""Helpers for testing plugins in isolation (import from your plugin's tests).

``plugin_set(module)`` loads the core plus just your plugin module (no other installed
plugin), so a test sees exactly what your plugin registers; ``load_only("name")`` does the same
for installed plugins, through their entry points. ``tiny_recipe`` gives a recipe dict that
trains in a second on a slice of ``digits``; ``run_tiny`` trains it; ``compose_trainer`` gives
the trainer of a recipe's preset without training.

``FakeStep`` stands in for :class:`corekit.Step` when calling a loss on fixed tensors;
``run_on_ranks`` runs a function on several gloo processes and ``ddp_mean`` /
``rank_slice`` are what a rank does with its gradient and its share of the batch; ``synced``
is the loss and gradients a rank's optimizer sees (the trainer's own gradient averaging).

``record_evaluations``, ``chance_level`` and ``assert_above_chance`` check that a tiny run's
final NMI/ACC/ARI are those of its last evaluation and above chance; ``loss_probe``,
``regression_probe``, ``recorded_losses`` and ``assert_losses_match`` compare a recipe's loss
values with recorded ones, and ``LossRegression`` is a plugin's whole regression test of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from corekit import recipe as rc
from corekit.plugins import Plugins, load_plugins

if TYPE_CHECKING:
    import pytest
    import torch

    from corekit.data import ImageSet
    from corekit.engine.trainer import StageTrainer
    from corekit.metrics import NmiAverage
    from corekit.state.targets import BatchTargets


@contextmanager
def _only_plugins(names: Sequence[str]) -> Iterator[None]:
    """``DEEPCLUST_PLUGINS`` set to ``names`` inside the block, restored after it."""
    saved = os.environ.get("DEEPCLUST_PLUGINS")
    os.environ["DEEPCLUST_PLUGINS"] = ",".join(names)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DEEPCLUST_PLUGINS")
        else:
            os.environ["DEEPCLUST_PLUGINS"] = saved


def _names(plugins: str | Sequence[str]) -> list[str]:
    items = plugins.split(",") if isinstance(plugins, str) else list(plugins)
    return [name.strip() for name in items if name.strip()]


def plugin_set(*modules: ModuleType, name: str = "under_test") -> Plugins:
    """The core's components plus ``modules``, with every installed plugin switched off."""
    names = [name if len(modules) == 1 else f"{name}{i}" for i in range(len(modules))]
    with _only_plugins(names):
        return load_plugins(extra=list(zip(names, modules, strict=True)))


def load_only(plugins: str | Sequence[str]) -> Plugins:
    """The core plus only the installed plugins ``plugins`` (``"propos,hadis"`` or a list of
    names), loaded through their entry points as ``DEEPCLUST_PLUGINS=propos,hadis`` would; the
    environment is restored afterwards. List a plugin's base plugins too (hadis needs propos)."""
    names = _names(plugins)
    if not names:
        raise ValueError("load_only needs at least one plugin name")
    with _only_plugins(names):
        return load_plugins()


def tiny_recipe(**sections: Any) -> dict[str, Any]:
    """A one-epoch, three-step recipe on 256 digits; ``sections`` are merged over it."""
    base = {
        "name": "tiny",
        "data": {"name": "digits", "subset": 256},
        "model": {"backbone": {"type": "mlp", "hidden": 64, "out_dim": 32},
                  "heads": {"proj": {"type": "mlp_projector", "hidden": 32, "out_dim": 16}}},
        "augment": {"type": "simclr", "views": 2, "crop_scale": [0.5, 1.0]},
        "losses": {"instance": {"type": "nt_xent", "head": "proj"}},
        "clusterer": {"type": "kmeans", "every": 0, "before_training": False, "n_init": 1},
        "train": {"epochs": 1, "batch_size": 64, "steps_per_epoch": 3},
    }
    return rc.merge(base, sections)


def run_tiny(raw: dict[str, Any], out: Path, plugins: Plugins, **kwargs: Any) -> dict[str, Any]:
    """Validate ``raw`` and train it into ``out`` quietly (unless ``log`` is given); returns
    final metrics."""
    from corekit.runner import train

    return train(rc.validate(raw), out, plugins, **{"log": lambda _: None, "progress": False,
                                                    **kwargs})


def tiny_trainer(plugins: Plugins, raw: dict[str, Any], run_dir: Path | None) -> StageTrainer:
    """The trainer of the first stage of ``raw`` (a recipe table, e.g. a ``tiny_recipe``),
    composed on CPU on the images it trains on: digits, a seeded subset when ``data.subset``
    says so (as the runner draws it), writing into ``run_dir``; nothing is trained."""
    import torch

    from corekit.composer import compose
    from corekit.data import load_dataset
    from corekit.engine.trainer import StageTrainer

    stage = rc.validate(raw).stages[0]
    data = load_dataset("digits")
    if stage.data.subset:
        data = data.subset(stage.data.subset, stage.train.seed)
    cpu = torch.device("cpu")
    composed = compose(plugins, stage, lambda _name: data, cpu)
    return StageTrainer(composed, run_dir or Path(), cpu, None, 0, lambda _: None,
                        progress=False)


def composition_problems(plugins: Plugins, raw: dict[str, Any]) -> str:
    """The message of the error that composing ``raw``'s first stage raises (the test fails
    when it composes)."""
    import pytest

    from corekit.errors import RecipeError

    with pytest.raises(RecipeError) as caught:
        tiny_trainer(plugins, raw, None)
    return str(caught.value)


def compose_trainer(plugins: Plugins, recipe: str, run_dir: Path, *overrides: str,
                    dataset: ImageSet, data: str = "digits") -> StageTrainer:
    """The trainer of the first stage of ``recipe``'s ``data`` preset (with ``overrides``, as
    on the command line), composed on CPU with ``dataset`` standing for every data set the
    stage names, writing into ``run_dir``; nothing is trained. ``trainer.composed`` is the composed
    stage. To enter epoch ``e``, set ``trainer.ctx.epoch = e`` and fire
    ``trainer.hooks.fire("on_epoch_start", trainer.ctx)``."""
    import torch

    from corekit.composer import compose
    from corekit.engine.trainer import StageTrainer

    cpu = torch.device("cpu")
    stage = rc.resolve(recipe, plugins.find_recipe, data, list(overrides)).stages[0]
    composed = compose(plugins, stage, lambda name: dataset, cpu)
    return StageTrainer(composed, run_dir, cpu, None, 0, lambda _: None, progress=False)


class FakeStep:
    """Just enough of :class:`corekit.Step` to call a loss on fixed tensors:
    ``output(name, view, branch)`` returns ``outputs[(branch, name, view)]`` as given (with its
    autograd graph), ``labels()`` returns ``labels``, ``targets(name)`` the per-step labeler
    ``labelers[name]``'s confident labels on this step (as ``Step.targets`` gives them) and
    ``produces(name)`` the kind ``kinds[name]`` (default ``"logits"``).

    >>> step = FakeStep({("online", "proj", 0): za, ("online", "proj", 1): zb})
    >>> NTXent(head="proj")(step)

    An output, labels or labeler the loss asks for but the test did not give raise ``KeyError``.
    """

    def __init__(self, outputs: Mapping[tuple[str, str, int], torch.Tensor],
                 labels: torch.Tensor | None = None,
                 labelers: Mapping[str, Callable[[Any], tuple[torch.Tensor, torch.Tensor]]]
                 | None = None, kinds: Mapping[str, str] | None = None) -> None:
        self.outputs = dict(outputs)
        self._labels = labels
        self.labelers = dict(labelers or {})
        self.kinds = dict(kinds or {})

    def output(self, name: str, view: int = 0, branch: str = "online") -> torch.Tensor:
        key = (branch, name, view)
        if key not in self.outputs:
            raise KeyError(f"FakeStep has no output {key!r}; it has {sorted(self.outputs)}")
        return self.outputs[key]

    def labels(self) -> torch.Tensor:
        if self._labels is None:
            raise KeyError("FakeStep was made without labels: pass FakeStep(outputs, labels)")
        return self._labels

    def targets(self, name: str) -> BatchTargets:
        """The confident labels (B,) (``-1`` elsewhere), mask and weight (B,) of labeler
        ``name`` on this step."""
        import torch

        from corekit.state.targets import UNLABELLED, BatchTargets

        if name not in self.labelers:
            raise KeyError(f"FakeStep has no labeler {name!r}; it has {sorted(self.labelers)}")
        labels, mask = self.labelers[name](self)
        return BatchTargets(torch.where(mask, labels, UNLABELLED), mask, mask.float())

    def produces(self, name: str, branch: str = "online") -> str:
        return self.kinds.get(name, "logits")


EvaluationRecord = tuple["torch.Tensor", "torch.Tensor", int]
"""(labels, assignments, K) of one evaluation, as :func:`record_evaluations` records it."""


def record_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[EvaluationRecord]:
    """Record every evaluation the engine runs from now on (until ``monkeypatch`` is undone):
    returns the list that each call of ``StageTrainer.assignments`` appends its (ground-truth
    labels, assignments, K) to, on CPU. Wrap it in a fixture::

        @pytest.fixture
        def evaluations(monkeypatch):
            return record_evaluations(monkeypatch)
    """
    from corekit.engine.trainer import StageTrainer

    seen: list[EvaluationRecord] = []
    original = StageTrainer.assignments

    def spy(self: StageTrainer) -> torch.Tensor:
        pred = original(self)
        seen.append((self.composed.train_set.labels.cpu(), pred.cpu(),
                     self.composed.n_clusters))
        return pred

    monkeypatch.setattr(StageTrainer, "assignments", spy)
    return seen


SCORES = ("nmi", "acc", "ari")
"""The clustering scores :func:`chance_level` and :func:`assert_above_chance` look at."""


def chance_level(labels: torch.Tensor, pred: torch.Tensor, k: int, shuffles: int = 20,
                 seed: int = 0, nmi_average: NmiAverage = "arithmetic"
                 ) -> dict[str, float]:
    """The best NMI/ACC/ARI of ``shuffles`` random permutations of ``pred`` (generator seeded
    with ``seed``): the run's cluster sizes, but no relation to the images (about 0.01 NMI and
    0.14 ACC on digits); NMI normalised as ``nmi_average`` says (``eval.nmi_average``)."""
    import torch

    from corekit import metrics

    gen = torch.Generator().manual_seed(seed)
    runs = [metrics.evaluate(labels, pred[torch.randperm(len(pred), generator=gen)], k,
                             nmi_average)
            for _ in range(shuffles)]
    return {key: max(run[key] for run in runs) for key in SCORES}


DEFAULT_MARGINS = {"nmi": 0.1, "acc": 0.05, "ari": 0.05}
"""How far above :func:`chance_level` :func:`assert_above_chance` wants a tiny run (measured on
tiny digits runs of cc, propos and hadis: NMI 0.22-0.46 against a chance level under 0.02)."""


def assert_above_chance(final: Mapping[str, Any], evaluations: Sequence[EvaluationRecord],
                        margins: Mapping[str, float] | None = None,
                        nmi_average: NmiAverage = "arithmetic") -> None:
    """``final``'s (e.g. ``final.json``'s) NMI/ACC/ARI are exactly those of the assignments of
    the last of ``evaluations`` (from :func:`record_evaluations`), and each exceeds its
    :func:`chance_level` for those assignments by its margin (``margins`` defaults to
    :data:`DEFAULT_MARGINS`; give a subset of the scores to check fewer). ``nmi_average`` is
    the run's ``eval.nmi_average``."""
    from corekit import metrics

    assert evaluations, "no evaluation was recorded: is the fixture (record_evaluations) used?"
    margins = DEFAULT_MARGINS if margins is None else margins
    unknown = set(margins) - set(SCORES)
    if unknown:
        raise ValueError(f"margins for unknown scores {sorted(unknown)}; known: {SCORES}")
    labels, pred, k = evaluations[-1]
    recomputed = metrics.evaluate(labels, pred, k, nmi_average)
    written = {key: final[key] for key in SCORES}
    again = {key: recomputed[key] for key in SCORES}
    assert written == again, (
        f"final metrics {written} are not those of the last evaluation's assignments {again}")
    chance = chance_level(labels, pred, k, nmi_average=nmi_average)
    for key, margin in margins.items():
        assert final[key] > chance[key] + margin, (
            f"{key} {final[key]:.4f} is not above chance {chance[key]:.4f} + {margin}: "
            f"final {written}, chance {chance}")


def _free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(rank: int, fn: Any, world_size: int, port: int, out_dir: str,
               args: tuple[Any, ...]) -> None:
    """One spawned rank of :func:`run_on_ranks`: join the gloo group, run ``fn``, save its
    return value to ``out_dir/<rank>.pt``, leave the group.

    Before leaving, a garbage collection frees the autograd nodes of ``gather`` (reference
    cycles that hold the process group): left to interpreter exit, freeing the group there
    aborted the process ("terminate called without an active exception") in about a third
    of the runs that back-propagated through ``gather``; none in 60 runs with the collection.
    """
    import gc
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=60))
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, os.path.join(out_dir, f"{rank}.pt"))
        del result
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_on_ranks(fn: Any, world_size: int = 2, *args: Any) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` CPU processes joined in one gloo
    process group (``torch.distributed`` initialised, as under torchrun) and return the ranks'
    return values in rank order.

    ``fn`` must be picklable (a module-level function of an importable module, e.g. a test
    module) and so must ``args`` and the return values (tensors included; they come back
    through ``torch.save``). A rank that raises fails the whole call with its traceback.
    Each call spawns fresh interpreters (about a second or two each), so batch a test's
    checks into one ``fn``.
    """
    import tempfile

    import torch
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    with tempfile.TemporaryDirectory(prefix="deepclust-ranks-") as out_dir:
        mp.spawn(_rank_main, args=(fn, world_size, _free_port(), out_dir, tuple(args)),
                 nprocs=world_size, join=True)
        return [torch.load(os.path.join(out_dir, f"{rank}.pt"), weights_only=False)
                for rank in range(world_size)]


def rank_slice(n: int, rank: int, world_size: int) -> slice:
    """The rows of a global batch of ``n`` that rank ``rank`` of ``world_size`` holds: equal
    contiguous shares in rank order (``n`` must divide evenly)."""
    if n % world_size:
        raise ValueError(f"a batch of {n} does not split evenly over {world_size} ranks")
    share = n // world_size
    return slice(rank * share, (rank + 1) * share)


def synced(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> dict[str, Any]:
    """What the optimizer of one rank sees after ``loss.backward()``: ``loss``'s mean over the
    ranks (a gathered loss has the global value on every rank already; a per-sample mean is the
    rank's share) and ``params``' gradients after the trainer's own averaging
    (``corekit.distributed.average_gradients``), as {"loss": scalar, "grads": [tensor, ...]}.
    On one process: the loss and the gradients themselves, the reference of an equality test."""
    from corekit import distributed

    loss.backward()
    distributed.average_gradients(params)
    return {"loss": distributed.all_reduce(loss.detach(), "mean"),
            "grads": [p.grad.clone() for p in params]}


def ddp_mean(grad: torch.Tensor) -> torch.Tensor:
    """What DDP makes of a parameter gradient: its mean over the ranks of the process group
    (a new tensor; ``grad`` is left alone). Call it on every rank, inside ``run_on_ranks``. It
    uses ``torch.distributed`` directly, not ``corekit.distributed``, so it can check that."""
    import torch.distributed as dist

    mean = grad.clone()
    dist.all_reduce(mean)
    mean /= dist.get_world_size()
    return mean


PROBE_OVERRIDES = ("data.subset=256", "train.batch_size=64", "train.steps_per_epoch=3",
                   'train.device="cpu"')
"""The settings :func:`loss_probe` applies over a recipe's ``digits`` preset."""

PROBE_EPOCHS = (0, 0, 6)
"""The epochs of the train steps :func:`loss_probe` records."""


def loss_probe(plugins: Plugins, recipe_name: str) -> dict[str, Any]:
    """The loss values of recipe ``recipe_name`` (its ``digits`` preset with
    :data:`PROBE_OVERRIDES`, one stage, CPU, float32, one thread), for regression tests.

    Returns ``{"fixed_views": {loss: value}, "train_steps": [{"loss": total, loss: value},
    ...]}``:

    - ``fixed_views``: every loss term, unweighted, on two (``augment.views``) fixed random
      views (``torch.rand`` with generator seed 7) of images 0-31, pseudo-labels ``i mod K``,
      global step 1, the step at the last epoch (every loss active) and the lifecycle at epoch
      0 (so epoch-gated noise is off and the values are deterministic);
    - ``train_steps``: three real M-steps (``StageTrainer.train_step``) of a fresh composition
      after its E-step (if any), at epochs :data:`PROBE_EPOCHS` (0, 0, 6), on the first three
      batches of the epoch-0 order ``randperm(N)`` drawn from the trainer's epoch generator.

    Each part composes the stage afresh after ``seed_everything(train.seed)``, so the values
    depend only on the code and the recipe.
    """
    import tempfile

    import torch

    from corekit.composer import compose
    from corekit.engine.seed import seed_everything
    from corekit.engine.trainer import StageTrainer, steps_per_epoch
    from corekit.runner import DataCache

    cpu = torch.device("cpu")
    stage = rc.resolve(recipe_name, plugins.find_recipe, "digits",
                       list(PROBE_OVERRIDES)).stages[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="deepclust-probe-") as run_dir:

            def build() -> StageTrainer:
                seed_everything(stage.train.seed)
                cache = DataCache(cpu)

                def datasets(name: str):
                    return cache(name, stage.data.subset, stage.train.seed)

                train_set = datasets(stage.data.name)
                steps = steps_per_epoch(len(train_set), stage.train.batch_size,
                                        stage.train.drop_last, stage.train.steps_per_epoch)
                composed = compose(plugins, stage, datasets, cpu, None, steps)
                trainer = StageTrainer(composed, Path(run_dir), cpu, None, 0, lambda _: None,
                                       progress=False)
                composed.model.online.train()
                for branch in composed.model.branches.values():
                    branch.network.train()
                return trainer

            trainer = build()
            c = trainer.composed
            generator = torch.Generator().manual_seed(7)
            size = stage.augment.size or c.train_set.size
            size = size if isinstance(size, int) else max(size)
            views = {name: torch.rand(32, c.train_set.channels, size, size, generator=generator)
                     for name in stage.augment.view_names()}
            if c.pseudo is not None:
                c.pseudo.write(torch.arange(len(c.train_set)) % c.n_clusters,
                               torch.zeros(c.n_clusters, 4))
            trainer.global_step = 1
            step = trainer.make_step(torch.arange(32), views, stage.train.epochs - 1)
            trainer.hooks.fire("on_epoch_start", trainer.context(0))
            fixed = {k: float(v.detach()) for k, v in trainer.loss_terms(step).items()}

            trainer = build()
            c = trainer.composed
            if c.pseudo is not None:
                trainer.e_step(0)
            generator = torch.Generator().manual_seed(stage.train.seed * 100_003)
            order = torch.randperm(len(c.train_set), generator=generator)
            batch = trainer.batch_size
            steps_out = []
            for k, epoch in enumerate(PROBE_EPOCHS):
                trainer.hooks.fire("on_epoch_start", trainer.context(epoch))
                indices = order[k * batch:(k + 1) * batch]
                out = trainer.train_step(indices, c.train_set.batch(indices), epoch, generator)
                steps_out.append({key: float(v) for key, v in out.items() if key != "lr"})
    finally:
        torch.set_num_threads(threads)
    return {"fixed_views": fixed, "train_steps": steps_out}


def regression_probe(plugins: str | Sequence[str], recipe: str) -> dict[str, Any]:
    """:func:`loss_probe` of ``recipe`` with the core plus only the installed ``plugins``
    (:func:`load_only`; ``"propos,hadis"`` or a list of names)."""
    return loss_probe(load_only(plugins), recipe)


RECORDS = {"fixed_views": "loss_values_c9554c8.json",
           "train_steps": "train_steps_batched_views.json"}
"""The file, in a plugin's ``tests/data``, that each part of its recorded probe comes from."""


def recorded_losses(data_dir: Path) -> dict[str, Any]:
    """The recorded :func:`loss_probe` a plugin's regression test compares with, from
    ``data_dir`` (see :data:`RECORDS`).

    ``fixed_views`` are the values main at c9554c8 gave, before Core v2 (needs, lifecycle,
    named state, schedules as registry kinds): the rewrite of the core must not change what a
    recipe computes. ``train_steps`` draw random views, and issue #23 changed their random
    numbers but not their distributions (tests/core/test_augment.py): it folded the views'
    rotation, crop and flip into one affine warp per batch (``RandomGeometry``), then drew the
    colour jitter in one batched op (``RandomColorJitter``). So they were recorded again right
    after those changes; the values on fixed views still match c9554c8."""
    import json

    return {part: json.loads((data_dir / name).read_text())[part]
            for part, name in RECORDS.items()}


def assert_losses_match(probe: Mapping[str, Any], recorded: Mapping[str, Any], part: str,
                        rel: float = 1e-6) -> None:
    """Part ``part`` of a :func:`loss_probe` result equals the same part of ``recorded`` (a
    probe of the same recipe saved earlier, e.g. as JSON from another commit) to a relative
    ``rel`` (no absolute slack):

    - ``"fixed_views"``: the same loss terms in the same order, each value within ``rel``;
    - ``"train_steps"``: one step per :data:`PROBE_EPOCHS` on both sides and, step by step,
      the same keys (total ``loss`` and terms, in any order), each value within ``rel``.
    """
    import pytest

    def far(got: Mapping[str, float], want: Mapping[str, float]) -> str:
        """The terms outside ``rel``, for the failure message (corekit.testing is not
        rewritten by pytest, so its asserts say only what they are told)."""
        rows = [f"{key}: {got[key]!r} vs recorded {want[key]!r} "
                f"(relative {abs(got[key] - want[key]) / abs(want[key]) if want[key] else 'inf'})"
                for key in want if got[key] != pytest.approx(want[key], rel=rel, abs=0)]
        return f"outside rel={rel}: " + "; ".join(rows)

    if part not in ("fixed_views", "train_steps"):
        raise ValueError(f"part must be 'fixed_views' or 'train_steps', got {part!r}")
    got, want = probe[part], recorded[part]
    if part == "fixed_views":
        assert list(got) == list(want), f"loss terms {list(got)}, recorded {list(want)}"
        assert got == pytest.approx(want, rel=rel, abs=0), far(got, want)
    else:
        assert len(got) == len(want) == len(PROBE_EPOCHS), (
            f"{len(got)} steps, {len(want)} recorded, {len(PROBE_EPOCHS)} probed")
        for index, (step, expected) in enumerate(zip(got, want, strict=True)):
            assert sorted(step) == sorted(expected), (
                f"step {index + 1}: other loss terms: {sorted(step)}, recorded {sorted(expected)}")
            assert step == pytest.approx(expected, rel=rel, abs=0), (
                f"step {index + 1}: {far(step, expected)}")


class LossRegression:
    """The loss-value regression test of one plugin's recipe, shared by the plugins' regression
    modules: the :func:`regression_probe` of ``recipe`` with the core plus only the installed
    ``plugins`` (``"propos,hadis"``: list base plugins too), against the :func:`recorded_losses`
    in ``data_dir`` (the plugin's ``tests/data``), to a relative ``rel``. The probe runs once,
    at the first :meth:`check` (a failure to compose or probe is raised again by every check,
    without probing again). A plugin's module is then::

        REGRESSION = LossRegression("cc", "cc", Path(__file__).parent / "data")

        def test_losses_on_fixed_views_match_c9554c8() -> None:
            REGRESSION.check("fixed_views")

        def test_losses_of_three_train_steps_match_the_batched_views_record() -> None:
            REGRESSION.check("train_steps")
    """

    def __init__(self, plugins: str | Sequence[str], recipe: str, data_dir: Path,
                 rel: float = 1e-6) -> None:
        self.plugins, self.recipe, self.data_dir, self.rel = plugins, recipe, data_dir, rel
        self._probe: dict[str, Any] | BaseException | None = None

    def probe(self) -> dict[str, Any]:
        """The :func:`regression_probe` of the recipe, computed on the first call."""
        if self._probe is None:
            try:
                self._probe = regression_probe(self.plugins, self.recipe)
            except Exception as error:  # kept, and raised again by each check
                self._probe = error
        if isinstance(self._probe, BaseException):
            raise self._probe
        return self._probe

    def check(self, part: str) -> None:
        """Part ``part`` (``"fixed_views"`` or ``"train_steps"``) of the probe matches the
        record (:func:`assert_losses_match`)."""
        assert_losses_match(self.probe(), recorded_losses(self.data_dir), part, rel=self.rel)


def write_digits_folder(root: Path, indices: Iterable[int],
                        class_name: Callable[[int], str] | None = "class{}".format,
                        rgb: bool = False) -> Path:
    """scikit-learn's digits ``indices`` as 16-px PNGs under ``root``: one subfolder per
    class named ``class_name(digit)``, or flat where ``class_name`` is None; ``rgb`` makes
    colour images (the grey digit, its negative and half of it as R, G, B). Returns
    ``root``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in indices:
        folder = root / class_name(int(digits.target[i])) if class_name else root
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
        image = np.stack([pixels, 255 - pixels, pixels // 2], -1) if rgb else pixels
        Image.fromarray(image).resize((16, 16)).save(folder / f"{i}.png")
    return root


def pip_install_plan(folder: Path) -> dict[str, dict[str, Any]]:
    """What ``pip install FOLDER`` would install, by distribution name, from pip's own resolver
    (a dry run with no package index, so only local folders can satisfy dependencies): each
    item has ``metadata`` (``requires_dist``, ...) and ``download_info`` (``url``)."""
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index",
             "--no-build-isolation", "--report", str(report), str(folder)],
            check=True, capture_output=True,
        )
        items = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item for item in items}
