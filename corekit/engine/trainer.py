"""One stage of the generic EM loop: E-step (features -> clusterer -> pseudo-labels) on a
schedule, M-step (views -> branches -> losses -> optimizer -> state updates) per batch."""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn
from tqdm import tqdm

from corekit import checkpoint_io as checkpoint
from corekit import distributed, metrics
from corekit import recipe as rc
from corekit.assign import centroid_confidence, head_assignment
from corekit.budget import Pacer, agreed_refit, format_seconds
from corekit.components.clusterers import ClusterResult
from corekit.composer import STATE_INPUT, Composed
from corekit.data import ImageSet
from corekit.engine import estep
from corekit.engine.devices import autocast
from corekit.engine.metrics_log import MetricsLog
from corekit.engine.phases import PhaseTimer
from corekit.errors import NonFiniteLoss, RecipeError, TrainingError
from corekit.feature_cache import FrozenInputs, fixed_part, through_cache
from corekit.lifecycle import StageContext
from corekit.network import Network
from corekit.parts import parse_assign, parse_feature
from corekit.state.targets import BatchTargets, LabelRows
from corekit.step import MAIN, ConcatForward, Step
from corekit.views import ViewName, stream_view, view_key


def steps_per_epoch(n_images: int, batch_size: int, drop_last: bool, cap: int | None) -> int:
    batch = min(batch_size, n_images)
    steps = n_images // batch if drop_last else math.ceil(n_images / batch)
    return min(steps, cap) if cap else steps


def epoch_steps(train: rc.Train, n_images: int) -> int:
    """Steps per epoch of a stage trained as ``train`` on ``n_images`` images: the batches of
    ``train.batch_size`` (at most ``steps_per_epoch``); with streams, ``steps_per_epoch``, else
    the batches of the first stream that walks the images."""
    streams = train.stream_specs()
    if not streams:
        return steps_per_epoch(n_images, train.batch_size, train.drop_last,
                               train.steps_per_epoch)
    if train.steps_per_epoch:
        return train.steps_per_epoch
    walking = [spec for spec in streams.values() if spec.rows is None]
    if not walking:
        raise RecipeError("train.steps_per_epoch: every stream walks a targets state's rows, "
                          "whose count is not known before training; set the steps of an epoch")
    return steps_per_epoch(n_images, walking[0].batch_size, train.drop_last, None)


class StageTrainer:
    """Runs one composed stage: writes ``metrics.jsonl`` into ``run_dir`` and its checkpoint
    into ``stage_dir`` (default ``run_dir/stages/<stage name>``).

    Public seams for benches and tests: ``make_step`` (a Step on given views),
    ``loss_terms`` (every active loss of a step), ``train_step`` (one full M-step),
    ``e_step``, ``evaluate``, ``state_dict`` / ``load_state_dict`` and ``run``.
    """

    def __init__(self, composed: Composed, run_dir: Path, device: torch.device,
                 dtype: torch.dtype | None, stage_index: int, log: Callable[[str], None],
                 progress: bool = True, stage_dir: Path | None = None,
                 pacer: Pacer | None = None) -> None:
        self.composed = composed
        self.train_cfg = composed.stage.train
        self.run_dir = run_dir
        self.stage_dir = stage_dir or run_dir / "stages" / composed.stage.name
        self.device = device
        self.dtype = dtype
        self.stage_index = stage_index
        self.log = log
        self.progress = progress
        self.steps = epoch_steps(self.train_cfg, len(composed.train_set))
        self.batch_size = min(self.train_cfg.batch_size, len(composed.train_set))
        self.streams = self.train_cfg.stream_specs()
        if distributed.is_distributed():
            distributed.check_batch(self.batch_size)
            for name, spec in self.streams.items():
                distributed.check_batch(spec.batch_size, f"train.streams.{name}.batch_size")
            if self.train_cfg.sync_bn:
                layers = distributed.sync_batch_norm(self.networks(), device)
                log(f"train.sync_bn: {layers} BatchNorm layers normalise by the global batch "
                    f"of the {distributed.world_size()} processes (SyncBatchNorm)")
        scaler_on = dtype == torch.float16 and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=scaler_on)
        self.global_step = 0
        self.start_epoch = 0
        self._cluster_cache: tuple[tuple[int, str], torch.Tensor, ClusterResult] | None = None
        self._head_cache: tuple[tuple[int, str], torch.Tensor] | None = None
        self._prefill: FrozenInputs | None = None
        self.checkpoint_path = self.stage_dir / "checkpoint.pt"
        self.metrics = MetricsLog(run_dir)
        self.phases = PhaseTimer(enabled=self.train_cfg.time_phases, device=device)
        self.pacer = pacer
        self.epochs = self.train_cfg.epochs
        """The epochs the stage runs: the recipe's (as planned), or as its ``pacer`` re-fits."""
        self.hooks = composed.hooks
        self.ctx = StageContext(stage=composed.stage.name, epochs=self.train_cfg.epochs,
                                steps_per_epoch=self.steps, model=composed.model,
                                state=composed.state, out_dir=self.stage_dir, log=log,
                                features=lambda spec: self.features(spec, composed.train_set))
        readers = [w.fn for w in composed.losses] + [composed.sampler]
        self.reads_labels = any(need.kind == "labels" for r in readers
                                for need in (r.needs() if callable(getattr(r, "needs", None))
                                             else []))

    def networks(self) -> list[Network]:
        """The online network and every branch's (EMA targets)."""
        model = self.composed.model
        return [model.online, *(b.network for b in model.branches.values())]

    # -- features and assignments -------------------------------------------------------
    def features(self, spec: str, data: ImageSet) -> torch.Tensor:
        """Part ``spec`` (``branch:name``) of every image, eval transform, eval mode. The
        output of the last part on the way whose weights stay fixed in this stage (a frozen
        backbone; every part when the stage trains no epoch) comes from the feature cache
        (``corekit.feature_cache``): extracted once per weights, images and transform."""
        return self.features_of(spec, data, None)

    @torch.no_grad()
    def features_of(self, spec: str, data: ImageSet, rows: slice | None) -> torch.Tensor:
        """``features`` of the images ``rows`` (a rank's share in the E-step under torchrun;
        None: every image). A frozen part's output is cached, and so extracted, for the
        whole set."""
        branch, name = parse_feature(spec, "features")
        net: Network = self.composed.model.network(branch)
        trained = self.train_cfg.epochs > 0
        fixed = fixed_part(net, name, trained)
        out = through_cache(net, name, data, self.composed.eval_transform,
                            precision=self.dtype, trained=trained, device=self.device,
                            extract=lambda part, known: self._extract(
                                net, part, data, known, rows=None if part == fixed else rows))
        return out[rows] if rows is not None and name == fixed else out

    @torch.no_grad()
    def _extract(self, net: Network, name: str, data: ImageSet,
                 known: dict[str, torch.Tensor], transform: nn.Module | None = None,
                 rows: slice | torch.Tensor | None = None) -> torch.Tensor:
        """Part ``name`` of ``net`` on every image of ``data`` (or the images ``rows``: a slice
        or an index tensor), from the ``known`` (N, D) outputs of a part it reads when given
        (the images are then not read), else through ``transform`` (default the evaluation
        transform)."""
        transform = transform or self.composed.eval_transform
        was_training = net.training
        net.eval()
        out = []
        order = torch.arange(len(data))[rows if rows is not None else slice(None)]
        batches = data.batches(order, self.composed.stage.eval.batch_size)
        for indices, images in batches:
            x = images if known else transform(images)
            if self.train_cfg.memory_format == "channels_last" and not known:
                x = x.contiguous(memory_format=torch.channels_last)
            given = {part: value[indices.to(value.device)] for part, value in known.items()}
            with autocast(self.device, self.dtype):
                out.append(net.compute(name, x, given).float())
        net.train(was_training)
        return torch.cat(out)

    def clustered(self, spec: str) -> tuple[torch.Tensor, ClusterResult]:
        """The (normalised) features ``spec`` of the training set and the clusterer's result on
        them; reused while the weights are unchanged. Under torchrun the features are this
        rank's share of the images (``distributed.split``) and the result is the whole set's
        (``corekit.engine.estep``)."""
        key = (self.global_step, spec)
        if self._cluster_cache is not None and self._cluster_cache[0] == key:
            return self._cluster_cache[1], self._cluster_cache[2]
        data = self.composed.train_set
        rows = distributed.split(len(data))
        feats = (self.features_of(spec, data, rows) if distributed.is_distributed()
                 else self.features(spec, data))
        if self.composed.stage.clusterer.normalize:
            feats = nn.functional.normalize(feats, dim=1)
        result = estep.fit_shards(self.composed.clusterer, feats, torch.arange(len(data))[rows],
                                  len(data), self.log)
        self._cluster_cache = (key, feats, result)
        return feats, result

    def cluster(self, spec: str) -> ClusterResult:
        """Run the clusterer on features ``spec``; reused while the weights are unchanged."""
        return self.clustered(spec)[1]

    def e_step(self, epoch: int) -> dict[str, float]:
        """Features of the whole set -> clusterer -> pseudo-label buffer (no labels read)."""
        t0 = time.perf_counter()
        with self.phases("estep"):
            result = self.cluster(self.composed.stage.clusterer.features)
        self.composed.pseudo.write(result.labels, result.centroids)
        stats = metrics.cluster_stats(result.labels, self.composed.n_clusters)
        if stats["empty_clusters"]:
            self.log(f"  E-step (epoch {epoch}): {int(stats['empty_clusters'])} empty cluster(s)")
        return {"estep_seconds": time.perf_counter() - t0, "estep_empty": stats["empty_clusters"]}

    def run_labelers(self, epoch: int, at_end: bool = False) -> dict[str, float]:
        """Run each dataset-level labeler due at the start of real epoch ``epoch`` (before
        training and every ``every`` epochs), or at the stage's end (``at_end``); the seconds
        each took, for the metrics."""
        seconds: dict[str, float] = {}
        for name in self.composed.dataset_labelers:
            spec = self.composed.stage.pseudo_labeler[name]
            due = (spec.when == "stage_end") if at_end else (
                spec.when == "epochs" and (epoch == 0 or (spec.every and epoch % spec.every == 0)))
            if due:
                t0 = time.perf_counter()
                with self.phases("estep"):
                    self.label(name, epoch)
                seconds[f"labeler_{name}_seconds"] = time.perf_counter() - t0
        return seconds

    def label(self, name: str, epoch: int) -> LabelRows:
        """Run dataset-level labeler ``name`` on its inputs (of every image, or of the random
        ``sample`` drawn from the seed, epoch and name) and write its rows into its
        ``targets`` state; the rows, in dataset indices."""
        spec = self.composed.stage.pseudo_labeler[name]
        n = len(self.composed.train_set)
        sample = None
        if spec.sample is not None:
            generator = torch.Generator().manual_seed(
                self.train_cfg.seed * 100_003 + epoch + zlib.crc32(name.encode()))
            sample = torch.randperm(n, generator=generator)[:spec.sample]
        inputs = {key: self.labeler_input(source, spec.view, sample)
                  for key, source in spec.inputs.items()}
        indices = torch.arange(n) if sample is None else sample
        rows = self.composed.dataset_labelers[name].label(inputs).at(indices)
        self.composed.state[spec.writes].write(rows)
        return rows

    def labeler_input(self, source: str, view: ViewName | None = None,
                      indices: torch.Tensor | None = None) -> torch.Tensor:
        """A labeler input (n, D) for the training images ``indices`` (n,) (default all N):
        their rows of state ``state:NAME`` (its ``read()``), or part ``branch:name`` through
        the evaluation transform (``features``, computed for the whole set and cached) or,
        given ``view``, through that view's pipeline (random: drawn afresh for these images
        alone, not cached)."""
        data = self.composed.train_set
        if source.startswith(STATE_INPUT):
            whole = self.composed.state[source.removeprefix(STATE_INPUT)].read()
        elif view is None:
            whole = self.features(source, data)
        else:
            branch, name = parse_feature(source, "pseudo_labeler.inputs")
            pipeline = self.composed.views[view_key(list(self.composed.views), view)]
            return self._extract(self.composed.model.network(branch), name, data, {}, pipeline,
                                 indices)
        return whole if indices is None else whole[indices.to(whole.device)]

    def assignments(self) -> torch.Tensor:
        """Cluster ids of every training image, as ``eval.assign`` says."""
        return self.assigned()[0]

    def assigned(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Cluster ids (N,) of every training image, as ``eval.assign`` says, and each one's
        confidence (N,) in [0, 1]: the head's probability, or the centroid margin
        (``corekit.assign.centroid_confidence``). The head's outputs, like the clustering, are
        reused while the weights are unchanged (the evaluation and ``assignments.csv``)."""
        stage = self.composed.stage
        assigned = parse_assign(stage.eval.assign)
        if assigned is None:
            spec = stage.eval.features or stage.clusterer.features
            feats, result = self.clustered(spec)
            mine = result.labels[distributed.split(len(result.labels))]  # feats' images
            confidence = centroid_confidence(feats, result.centroids, mine)
            return result.labels, distributed.gather_rows(confidence)
        branch, head = assigned
        key = (self.global_step, f"{branch}:{head}")
        if self._head_cache is None or self._head_cache[0] != key:
            self._head_cache = (key, self.features(key[1], self.composed.train_set))
        kind = self.composed.model.network(branch).produces(head)
        return head_assignment(self._head_cache[1], kind)

    def keep_final_clustering(self) -> None:
        """Write the evaluation's clustering (labels and centroids) into the ``pseudo`` state, so
        the stage's outputs hold the centroids that assign new images (``deepclust predict``)."""
        stage = self.composed.stage
        if parse_assign(stage.eval.assign) is None and self.composed.pseudo is not None:
            spec = stage.eval.features or stage.clusterer.features
            result = self.cluster(spec)
            self.composed.pseudo.write(result.labels, result.centroids)

    def evaluate(self) -> dict[str, float]:
        """Assignments and, where the set has labels and is the main set, NMI (as
        ``eval.nmi_average`` says), ACC and ARI."""
        pred = self.assignments().cpu()
        data = self.composed.train_set
        if data.labels is None or data is not self.composed.eval_set:
            return metrics.cluster_stats(pred, self.composed.n_clusters)
        return metrics.evaluate(data.labels.cpu(), pred, self.composed.n_clusters,
                                self.composed.stage.eval.nmi_average)

    # -- the M-step ---------------------------------------------------------------------
    def set_lr(self) -> float:
        """Each group's lr = its base lr × the schedule's factor at the current step."""
        factor = self.composed.schedule.factor(self.schedule_step(self.global_step))
        groups = self.composed.optimizer.param_groups
        for group, base in zip(groups, self.composed.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.composed.base_lrs[0] * factor

    def views(self, images: torch.Tensor, names: Sequence[ViewName] | None = None
              ) -> dict[ViewName, torch.Tensor]:
        """Every view pipeline (or those of ``names``) on ``images`` (B, C, H, W), float in
        [0, 1], by view name, in the stage's view order (so the pipelines draw their randomness
        in that order)."""
        wanted = None if names is None else {view_key(list(self.composed.views), n)
                                             for n in names}
        views = {name: pipeline(images) for name, pipeline in self.composed.views.items()
                 if wanted is None or name in wanted}
        if self.train_cfg.memory_format == "channels_last":
            views = {name: v.contiguous(memory_format=torch.channels_last)
                     for name, v in views.items()}
        return views

    def _reference_batch(self, generator: torch.Generator) -> torch.Tensor | None:
        ref = self.composed.reference
        if ref is None:
            return None
        drawn = torch.randint(len(ref), (self.batch_size,), generator=generator)
        return ref.batch(distributed.shard(drawn, self.batch_size)[0])

    def schedule_epoch(self, epoch: int) -> int:
        """Where real epoch ``epoch`` stands on the planned schedule: itself, unless a budget
        re-fit compressed the schedule (``corekit.budget.Warp``)."""
        return self.pacer.warp.epoch(epoch) if self.pacer is not None else epoch

    def schedule_step(self, step: int) -> int:
        """Where real global step ``step`` stands on the planned schedule."""
        return self.pacer.warp.step(step, self.steps) if self.pacer is not None else step

    def make_step(self, indices: torch.Tensor, views: list[torch.Tensor], epoch: int,
                  reference: torch.Tensor | None = None) -> Step:
        """A Step over ``views`` (V tensors (B, C, H, W)) of the images ``indices`` (B,) in
        real epoch ``epoch``; the step's ``epoch`` and ``global_step`` are the schedule's
        (``schedule_epoch``, ``schedule_step``).

        When a view pipeline is the evaluation transform and the stage freezes an encoder, the
        step is given that encoder's cached features of ``indices`` on that view
        (``FrozenInputs``, ``Step.prefill``): the frozen encoder never runs in training."""
        step = Step(model=self.composed.model, views=views, indices=indices,
                    epoch=self.schedule_epoch(epoch),
                    global_step=self.schedule_step(self.global_step),
                    epochs=self.train_cfg.epochs,
                    states=self.composed.state, reference=reference,
                    labelers=self.composed.step_labelers)
        if self._prefill is None:
            self._prefill = FrozenInputs.of(
                self.composed, lambda spec: self.features(spec, self.composed.train_set))
        self._prefill.fill(step)
        return step

    def loss_terms(self, step: Step) -> dict[str, torch.Tensor]:
        """Every loss active at ``step.epoch``, in recipe order, unweighted, in float32."""
        terms: dict[str, torch.Tensor] = {}
        with autocast(self.device, self.dtype):
            for loss in self.composed.losses:
                if loss.active(step.epoch):
                    terms[loss.name] = loss.fn(step).float()
        return terms

    def make_streams_step(self, batch: Mapping[str, StreamBatch],
                          views: Mapping[str, dict[ViewName, torch.Tensor]], epoch: int,
                          reference: torch.Tensor | None = None) -> Step:
        """The Step of one batch of streams (``views``: each stream's views): with no
        ``train.streams``, ``make_step`` of the one stream; else the first stream's step, each
        stream's reachable as ``step.stream(NAME)``, sharing the ``train.concat`` forward."""
        if not self.streams:
            (only,) = batch.values()
            return self.make_step(only.indices, views[MAIN], epoch, reference)
        steps = {}
        for name, part in batch.items():
            steps[name] = self.make_step(part.indices, views[name], epoch, reference)
            steps[name].name, steps[name].rows = name, dict(part.rows)
        concat = None
        if self.train_cfg.concat:
            members = [concat_member(entry, steps) for entry in self.train_cfg.concat]
            concat = ConcatForward(self.composed.model, members,
                                   [steps[stream].views[view] for stream, view in members])
        for step in steps.values():
            step.streams, step.concat = steps, concat
        return next(iter(steps.values()))

    def train_step(self, indices: torch.Tensor, images: torch.Tensor, epoch: int,
                   generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One M-step on ``images`` (float in [0, 1]) with dataset ``indices`` (a stage with
        one stream); ``train_batch`` of it."""
        return self.train_batch({MAIN: StreamBatch(indices, images)}, epoch, generator)

    def train_batch(self, batch: Mapping[str, StreamBatch], epoch: int,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One M-step on ``batch`` (each stream's images and indices): lifecycle
        ``on_step_start`` → losses → ``before_backward`` → backward → optimizer →
        ``after_optimizer_step`` → per-batch E-step."""
        self.global_step += 1
        lr = self.set_lr()
        phase = self.phases
        with phase("augment"):
            views = {name: self.views(part.images, self.streams[name].views
                                      if name in self.streams else None)
                     for name, part in batch.items()}
            reference = self._reference_batch(generator)
        step = self.make_streams_step(batch, views, epoch, reference)
        with phase("forward"):
            self.hooks.fire("on_step_start", step)
            terms = self.loss_terms(step)
        total = sum(self._weight(name) * value for name, value in terms.items())
        if not torch.isfinite(total).item():
            self._raise_non_finite(epoch, terms)
        with phase("backward"):
            self.hooks.fire("before_backward", step)
            self.composed.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            if distributed.is_distributed():
                distributed.average_gradients(
                    p for group in self.composed.optimizer.param_groups for p in group["params"])
        with phase("optimizer"):
            if self.train_cfg.grad_clip:
                self.scaler.unscale_(self.composed.optimizer)
                nn.utils.clip_grad_norm_(self.composed.model.online.parameters(),
                                         self.train_cfg.grad_clip)
            self.scaler.step(self.composed.optimizer)
            self.scaler.update()
        with phase("after_step"):
            self.hooks.fire("after_optimizer_step", step)
            if distributed.is_distributed():
                distributed.broadcast_buffers(self.networks())
        spec = self.composed.stage.clusterer
        if spec is not None and spec.per_batch:
            with phase("estep"):
                self._update_assignments(step)
        return {"loss": total.detach(), "lr": torch.tensor(lr),
                **{k: v.detach() for k, v in terms.items()}}

    @torch.no_grad()
    def _update_assignments(self, step: Step) -> None:
        """Per-batch E-step: the clusterer's ``update`` re-assigns this batch's images (under
        torchrun the global batch, gathered, so every rank updates alike)."""
        spec = self.composed.stage.clusterer
        branch, name = parse_feature(spec.features, "clusterer.features")
        feats = distributed.gather(step.output(name, 0, branch).detach())
        if spec.normalize:
            feats = nn.functional.normalize(feats, dim=1)
        labels = self.composed.clusterer.update(feats)
        self.composed.pseudo.labels[distributed.gather(step.indices)] = labels.to(torch.long)

    def _weight(self, name: str) -> float:
        return next(loss.weight for loss in self.composed.losses if loss.name == name)

    def _raise_non_finite(self, epoch: int, terms: dict[str, torch.Tensor]) -> None:
        bad = [f"{n} ({self._type(n)}) = {v.item()}" for n, v in terms.items()
               if not torch.isfinite(v).item()]
        last = (f"the last good checkpoint is {self.checkpoint_path}"
                if self.checkpoint_path.exists() else "no checkpoint was written yet")
        raise NonFiniteLoss(
            f"non-finite loss at step {self.global_step} (epoch {epoch}): "
            f"{', '.join(bad) or 'the weighted sum overflowed'}. Training stopped; {last}. "
            "Try a lower train.optimizer.lr, train.grad_clip, or train.precision = 'fp32'."
        )

    def _type(self, name: str) -> str:
        return next(loss.type for loss in self.composed.losses if loss.name == name)

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self, epoch: int) -> dict[str, Any]:
        composed = self.composed
        loss_states = {loss.name: loss.fn.state_dict() for loss in composed.losses
                       if isinstance(loss.fn, nn.Module)}
        payload: dict[str, Any] = {
            "stage": self.stage_index,
            "stage_name": composed.stage.name,
            "epoch": epoch,
            "global_step": self.global_step,
            "online": composed.model.online.state_dict(),
            "state": {name: module.state_dict() for name, module in composed.state.items()},
            "optimizer": composed.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "losses": loss_states,
            "views": [v.state_dict() for v in composed.views.values()],
            "rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return payload

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        composed = self.composed
        differ = network_differences(composed.model.online, payload["online"])
        if differ:
            raise TrainingError(
                f"--resume: the checkpoint {self.checkpoint_path} was trained with another "
                f"network: {'; '.join(differ)}. Resume with the recipe it was trained with "
                "(the run's recipe.toml), or train into a new --out")
        composed.model.online.load_state_dict(payload["online"])
        for name, module in composed.state.items():
            module.load_state_dict(payload["state"][name])
        composed.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        for loss in composed.losses:
            if isinstance(loss.fn, nn.Module):
                loss.fn.load_state_dict(payload["losses"][loss.name])
        for view, state in zip(composed.views.values(), payload["views"], strict=True):
            view.load_state_dict(state)
        torch.set_rng_state(payload["rng"])
        if "cuda_rng" in payload and self.device.type == "cuda":
            torch.cuda.set_rng_state(payload["cuda_rng"], self.device)
        # rank 0 saved its own generator: each rank draws its own views again
        distributed.seed_rank(self.train_cfg.seed + payload["epoch"] + 1)
        self.global_step = payload["global_step"]
        self.start_epoch = payload["epoch"] + 1

    # -- the loop -----------------------------------------------------------------------
    def context(self, epoch: int) -> StageContext:
        """The stage context the lifecycle hooks see, at real epoch ``epoch`` and the current
        step (the schedule's epoch and step: ``schedule_epoch``, ``schedule_step``)."""
        self.ctx.epoch = self.schedule_epoch(epoch)
        self.ctx.global_step = self.schedule_step(self.global_step)
        return self.ctx

    def run(self, resume: dict[str, Any] | None = None) -> dict[str, float]:
        """Train every remaining epoch of the stage (from ``resume``, a checkpoint payload);
        return the final evaluation."""
        cfg, composed = self.train_cfg, self.composed
        composed.model.online.train()
        for branch in composed.model.branches.values():
            branch.network.train()
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self.hooks.fire("on_stage_start", self.context(0))
        if resume is not None:
            self.load_state_dict(resume)
        result: dict[str, float] = {}
        epoch, cycle = self.start_epoch, time.perf_counter()
        while epoch < self.epochs:
            t0 = time.perf_counter()
            self.hooks.fire("on_epoch_start", self.context(epoch))
            record: dict[str, Any] = {"stage": composed.stage.name,
                                      "epoch": epoch + 1}  # as printed
            clus = composed.stage.clusterer
            if clus is not None and ((epoch == 0 and clus.before_training)
                                     or (epoch > 0 and clus.every and epoch % clus.every == 0)):
                record.update(self.e_step(epoch))
            if clus is not None and not composed.pseudo.ready and self.reads_labels:
                record.update(self.e_step(epoch))
            record.update(self.run_labelers(epoch))
            sums = self._epoch(epoch)
            record.update({k: v for k, v in sums.items()})
            self.hooks.fire("on_epoch_end", self.context(epoch))
            record.update(self.phases.take())
            record["seconds"] = time.perf_counter() - t0
            record["images_per_second"] = self.steps * self.batch_size / record["seconds"]
            if self.pacer is not None:
                cycle = self._pace(epoch, cycle)
            last = epoch + 1 >= self.epochs
            if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
                result = self.evaluate()
                record.update(result)
            if distributed.is_main():
                self.metrics.write(record, self.global_step)
            self.log(_summary(record, self.epochs))
            if distributed.is_main() and (
                    last or (cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0)):
                checkpoint.save_atomic(self.state_dict(epoch), self.checkpoint_path)
            if last:
                break
            epoch += 1
        if self.epochs == 0:
            self.run_labelers(0)
        self.run_labelers(self.epochs, at_end=True)
        self.hooks.fire("on_stage_end", self.context(self.epochs - 1))
        if not result:
            result = self.evaluate()
        self.keep_final_clustering()
        return result

    def _pace(self, epoch: int, cycle: float) -> float:
        """Tell the pacer that epoch ``epoch`` ended a cycle begun at ``cycle`` (its training
        and the evaluation and checkpoint before it) and take its re-fit; the next cycle's
        start."""
        now = time.perf_counter()
        refit = agreed_refit(self.pacer, epoch + 1, now - cycle)
        if refit is not None:
            self.epochs = refit.epochs
            self.log(f"  budget: {refit.describe()}"
                     + (f"; the schedule is compressed to end at epoch {refit.epochs}"
                        if refit.epochs > epoch + 1 else "; stopping now"))
        return now

    def _epoch(self, epoch: int) -> dict[str, float]:
        generator = torch.Generator().manual_seed(self.train_cfg.seed * 100_003 + epoch)
        totals: dict[str, torch.Tensor] = {}
        loaded = self.phases.iterate("data", self.epoch_batches(generator))
        batches = tqdm(loaded, total=self.steps,
                       desc=f"{self.composed.stage.name} epoch {epoch + 1}/{self.epochs}",
                       leave=False, disable=not self.progress, dynamic_ncols=True)
        for batch in batches:
            out = self.train_batch(batch, epoch, generator)
            if self.pacer is not None and self.progress:
                batches.set_postfix_str(f"{format_seconds(self.pacer.deadline.left)} left")
            for key, value in out.items():
                totals[key] = totals.get(key, 0) + value
        return {k: float(v) / max(self.steps, 1) for k, v in totals.items()}

    def epoch_batches(self, generator: torch.Generator, steps: int | None = None
                      ) -> Iterator[dict[str, StreamBatch]]:
        """The batches of an epoch of ``steps`` steps (default the stage's), each stream's order
        drawn from ``generator`` in stream order, loaded one step at a time. Under torchrun
        each batch is this rank's share of the global one (``corekit.distributed.shard``)."""
        steps = steps or self.steps
        data = self.composed.train_set
        if not self.streams:
            order = self.composed.sampler.order(len(data), steps * self.batch_size, generator,
                                                self.composed.state)
            for indices, images in data.batches(*distributed.shard(order, self.batch_size)):
                yield {MAIN: StreamBatch(indices, images)}
            return
        walks = {name: self._stream_walk(name, spec, steps, generator)
                 for name, spec in self.streams.items()}
        for i in range(steps):
            yield {name: walk.batch(data, i) for name, walk in walks.items()}

    def _stream_walk(self, name: str, spec: rc.Stream, steps: int,
                     generator: torch.Generator) -> StreamWalk:
        """Stream ``name``'s order for ``steps`` steps: image indices, or rows of its targets
        state."""
        count = steps * spec.batch_size
        if spec.rows is None:
            n = len(self.composed.train_set)
            order = (torch.randint(n, (count,), generator=generator) if spec.draw == "replacement"
                     else self.composed.sampler.order(n, count, generator, self.composed.state))
            return StreamWalk(order, spec.batch_size).sharded()
        rows = self.composed.state[spec.rows].rows()
        if len(rows.index) == 0:
            raise TrainingError(f"train.streams.{name}.rows: state {spec.rows!r} holds no row "
                                "(its labeler kept no image); nothing to train this stream on")
        size = len(rows.index)
        picks = (torch.randint(size, (count,), generator=generator)
                 if spec.draw == "replacement"
                 else torch.cat([torch.randperm(size, generator=generator)
                                 for _ in range(math.ceil(count / size))])[:count])
        return StreamWalk(rows.index.cpu()[picks], spec.batch_size, spec.rows,
                          rows.label.cpu()[picks], rows.weight.cpu()[picks]).sharded()


@attrs.frozen
class StreamBatch:
    """One stream's part of a step: dataset ``indices`` (B,), their ``images`` (B, C, H, W)
    float in [0, 1], and for a stream over a targets state's rows, the rows' targets by state
    name (``rows``)."""

    indices: torch.Tensor
    images: torch.Tensor
    rows: Mapping[str, BatchTargets] = attrs.field(factory=dict)


@attrs.frozen
class StreamWalk:
    """One stream's order over an epoch: ``order`` (steps · B,) image indices and, for a walk
    over the rows of targets state ``state``, each position's ``label`` and ``weight``."""

    order: torch.Tensor
    batch_size: int
    state: str | None = None
    label: torch.Tensor | None = None
    weight: torch.Tensor | None = None

    def sharded(self) -> StreamWalk:
        """This rank's share of every batch of the walk (itself on one process)."""
        if not distributed.is_distributed():
            return self
        at, share = distributed.shard(torch.arange(len(self.order)), self.batch_size)
        return StreamWalk(self.order[at], share, self.state,
                          None if self.label is None else self.label[at],
                          None if self.weight is None else self.weight[at])

    def batch(self, data: ImageSet, i: int) -> StreamBatch:
        """Step ``i``'s batch, loaded from ``data``."""
        at = slice(i * self.batch_size, (i + 1) * self.batch_size)
        indices = self.order[at]
        rows = {} if self.state is None else {self.state: BatchTargets(
            self.label[at], torch.ones(len(indices), dtype=torch.bool), self.weight[at])}
        return StreamBatch(indices, data.batch(indices), rows)


def concat_member(entry: str, steps: Mapping[str, Step]) -> tuple[str, ViewName]:
    """``"STREAM:VIEW"`` of ``train.concat`` as (stream, view key) among ``steps``' streams."""
    stream, view = stream_view(entry)
    return stream, view_key(list(steps[stream].views), view)


def network_differences(network: nn.Module, saved: dict[str, torch.Tensor]) -> list[str]:
    """Which parts (``encoders.backbone``, ``heads.proj``) of ``network`` do not fit ``saved``:
    tensors missing, unexpected or of another shape."""
    mine = network.state_dict()

    def part(key: str) -> str:
        return ".".join(key.split(".")[:2])

    problems: dict[str, list[str]] = {}
    for key in mine.keys() - saved.keys():
        problems.setdefault(part(key), []).append("missing from the checkpoint")
    for key in saved.keys() - mine.keys():
        problems.setdefault(part(key), []).append("not in this recipe")
    for key in mine.keys() & saved.keys():
        if mine[key].shape != saved[key].shape:
            problems.setdefault(part(key), []).append(
                f"{key} is {tuple(saved[key].shape)} in the checkpoint, "
                f"{tuple(mine[key].shape)} here")
    return [f"{name}: {sorted(set(why))[0]}" for name, why in sorted(problems.items())]


def _summary(record: dict[str, Any], epochs: int) -> str:
    parts = [f"[{record['stage']}] epoch {record['epoch']}/{epochs}",
             f"loss {record.get('loss', float('nan')):.4f}"]
    for key in ("nmi", "acc", "ari"):
        if key in record:
            parts.append(f"{key.upper()} {record[key]:.4f}")
    parts.append(f"{record['images_per_second']:.0f} img/s")
    parts.append(f"{record['seconds']:.1f}s")
    return " | ".join(parts)
