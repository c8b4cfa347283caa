"""One stage of the generic EM loop: E-step (features -> clusterer -> pseudo-labels) on a
schedule, M-step (views -> branches -> losses -> optimizer -> state updates) per batch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from corekit import metrics
from corekit.components.clusterers import ClusterResult
from corekit.composer import Composed, parse_feature
from corekit.data import ImageSet
from corekit.engine import checkpoint
from corekit.engine.devices import autocast
from corekit.engine.metrics_log import MetricsLog
from corekit.engine.phases import PhaseTimer
from corekit.engine.schedule import lr_factor
from corekit.errors import TrainingError
from corekit.network import Network
from corekit.step import Step


def steps_per_epoch(n_images: int, batch_size: int, drop_last: bool, cap: int | None) -> int:
    batch = min(batch_size, n_images)
    steps = n_images // batch if drop_last else math.ceil(n_images / batch)
    return min(steps, cap) if cap else steps


def _lifecycle(composed: Composed, method: str) -> list[Any]:
    """Every component that defines ``method`` (``on_epoch_start``, ``after_optimizer_step``)."""
    parts: list[Any] = [composed.model.target, composed.bank]
    parts += [composed.model.online.part(n) for n in composed.model.online.names()]
    parts += [loss.fn for loss in composed.losses]
    return [p for p in parts if p is not None and callable(getattr(p, method, None))]


class StageTrainer:
    """Runs one composed stage; writes metrics.jsonl and checkpoints into ``run_dir``."""

    def __init__(self, composed: Composed, run_dir: Path, device: torch.device,
                 dtype: torch.dtype | None, stage_index: int, log: Callable[[str], None],
                 progress: bool = True) -> None:
        self.c = composed
        self.train_cfg = composed.stage.train
        self.run_dir = run_dir
        self.device = device
        self.dtype = dtype
        self.stage_index = stage_index
        self.log = log
        self.progress = progress
        self.steps = steps_per_epoch(len(composed.train_set), self.train_cfg.batch_size,
                                     self.train_cfg.drop_last, self.train_cfg.steps_per_epoch)
        self.batch_size = min(self.train_cfg.batch_size, len(composed.train_set))
        scaler_on = dtype == torch.float16 and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=scaler_on)
        self.global_step = 0
        self.start_epoch = 0
        self._cluster_cache: tuple[tuple[int, str], ClusterResult] | None = None
        self.checkpoint_path = run_dir / "checkpoint.pt"
        self.metrics = MetricsLog(run_dir)
        self.phases = PhaseTimer(enabled=self.train_cfg.time_phases, device=device)

    # -- features and assignments -------------------------------------------------------
    @torch.no_grad()
    def features(self, spec: str, data: ImageSet) -> torch.Tensor:
        """Part ``spec`` (``branch:name``) of every image, eval transform, eval mode."""
        branch, name = parse_feature(spec, "features")
        net: Network = self.c.model.online if branch == "online" else self.c.model.target.network
        was_training = net.training
        net.eval()
        out = []
        for _, images in data.batches(torch.arange(len(data)), self.c.stage.eval.batch_size):
            x = self.c.eval_transform(images)
            if self.train_cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.dtype):
                out.append(net.compute(name, x, {}).float())
        net.train(was_training)
        return torch.cat(out)

    def cluster(self, spec: str) -> ClusterResult:
        """Run the clusterer on features ``spec``; reused while the weights are unchanged."""
        key = (self.global_step, spec)
        if self._cluster_cache is not None and self._cluster_cache[0] == key:
            return self._cluster_cache[1]
        feats = self.features(spec, self.c.train_set)
        if self.c.stage.clusterer.normalize:
            feats = nn.functional.normalize(feats, dim=1)
        result = self.c.clusterer.fit(feats)
        self._cluster_cache = (key, result)
        return result

    def e_step(self, epoch: int) -> dict[str, float]:
        """Features of the whole set -> clusterer -> pseudo-label buffer (no labels read)."""
        t0 = time.perf_counter()
        with self.phases("estep"):
            result = self.cluster(self.c.stage.clusterer.features)
        self.c.pseudo.write(result.labels, result.centroids)
        stats = metrics.cluster_stats(result.labels, self.c.n_clusters)
        if stats["empty_clusters"]:
            self.log(f"  E-step (epoch {epoch}): {int(stats['empty_clusters'])} empty cluster(s)")
        return {"estep_seconds": time.perf_counter() - t0, "estep_empty": stats["empty_clusters"]}

    def assignments(self) -> torch.Tensor:
        """Cluster ids of every training image, as ``eval.assign`` says."""
        assign = self.c.stage.eval.assign
        if assign == "clusterer":
            spec = self.c.stage.eval.features or self.c.stage.clusterer.features
            return self.cluster(spec).labels
        return self.features(f"online:{assign[5:]}", self.c.train_set).argmax(dim=1)

    def evaluate(self) -> dict[str, float]:
        """Assignments and, where the set has labels and is the main set, NMI/ACC/ARI."""
        pred = self.assignments().cpu()
        data = self.c.train_set
        if data.labels is None or data is not self.c.eval_set:
            return metrics.cluster_stats(pred, self.c.n_clusters)
        return metrics.evaluate(data.labels.cpu(), pred, self.c.n_clusters)

    # -- the M-step ---------------------------------------------------------------------
    def _set_lr(self) -> float:
        factor = lr_factor(self.train_cfg.schedule, self.global_step, self.steps,
                           self.train_cfg.epochs)
        for group, base in zip(self.c.optimizer.param_groups, self.c.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.c.base_lrs[0] * factor

    def _views(self, x: torch.Tensor) -> list[torch.Tensor]:
        views = [pipeline(x) for pipeline in self.c.views]
        if self.train_cfg.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views

    def _reference_batch(self, generator: torch.Generator) -> torch.Tensor | None:
        ref = self.c.reference
        if ref is None:
            return None
        return ref.batch(torch.randint(len(ref), (self.batch_size,), generator=generator))

    def train_step(self, indices: torch.Tensor, images: torch.Tensor, epoch: int,
                   generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One M-step on ``images`` (float in [0, 1]) with dataset ``indices``."""
        self.global_step += 1
        lr = self._set_lr()
        phase = self.phases
        with phase("augment"):
            views = self._views(images)
            reference = self._reference_batch(generator)
        step = Step(model=self.c.model, views=views, indices=indices, epoch=epoch,
                    global_step=self.global_step, epochs=self.train_cfg.epochs,
                    pseudo=self.c.pseudo, bank=self.c.bank, reference=reference)
        terms: dict[str, torch.Tensor] = {}
        with phase("forward"), autocast(self.device, self.dtype):
            for loss in self.c.losses:
                if loss.active(epoch):
                    terms[loss.name] = loss.fn(step).float()
        total = sum(self._weight(name) * value for name, value in terms.items())
        if not torch.isfinite(total).item():
            self._raise_non_finite(epoch, terms)
        with phase("backward"):
            self.c.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
        with phase("optimizer"):
            if self.train_cfg.grad_clip:
                self.scaler.unscale_(self.c.optimizer)
                nn.utils.clip_grad_norm_(self.c.model.online.parameters(),
                                         self.train_cfg.grad_clip)
            self.scaler.step(self.c.optimizer)
            self.scaler.update()
        with phase("after_step"):
            for part in self._after_step:
                part.after_optimizer_step(step)
        if self.c.stage.clusterer is not None and self.c.stage.clusterer.per_batch:
            with phase("estep"):
                self._update_assignments(step)
        return {"loss": total.detach(), "lr": torch.tensor(lr),
                **{k: v.detach() for k, v in terms.items()}}

    @torch.no_grad()
    def _update_assignments(self, step: Step) -> None:
        """Per-batch E-step: the clusterer's ``update`` re-assigns this batch's images."""
        spec = self.c.stage.clusterer
        branch, name = parse_feature(spec.features, "clusterer.features")
        feats = step.output(name, 0, branch).detach()
        if spec.normalize:
            feats = nn.functional.normalize(feats, dim=1)
        self.c.pseudo.labels[step.indices] = self.c.clusterer.update(feats).to(torch.long)

    def _weight(self, name: str) -> float:
        return next(loss.weight for loss in self.c.losses if loss.name == name)

    def _raise_non_finite(self, epoch: int, terms: dict[str, torch.Tensor]) -> None:
        bad = [f"{n} ({self._label(n)}) = {v.item()}" for n, v in terms.items()
               if not torch.isfinite(v).item()]
        last = (f"the last good checkpoint is {self.checkpoint_path}"
                if self.checkpoint_path.exists() else "no checkpoint was written yet")
        raise TrainingError(
            f"non-finite loss at step {self.global_step} (epoch {epoch}): "
            f"{', '.join(bad) or 'the weighted sum overflowed'}. Training stopped; {last}. "
            "Try a lower train.optimizer.lr, train.grad_clip, or train.precision = 'fp32'."
        )

    def _label(self, name: str) -> str:
        return next(loss.label for loss in self.c.losses if loss.name == name)

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self, epoch: int) -> dict[str, Any]:
        c = self.c
        loss_states = {loss.name: loss.fn.state_dict() for loss in c.losses
                       if isinstance(loss.fn, nn.Module)}
        payload: dict[str, Any] = {
            "stage": self.stage_index,
            "epoch": epoch,
            "global_step": self.global_step,
            "online": c.model.online.state_dict(),
            "optimizer": c.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "losses": loss_states,
            "views": [v.state_dict() for v in c.views],
            "rng": torch.get_rng_state(),
        }
        if c.model.target is not None:
            payload["target"] = c.model.target.state_dict()
        if c.pseudo is not None:
            payload["pseudo"] = {"labels": c.pseudo.labels, "centroids": c.pseudo.centroids}
        if c.bank is not None:
            payload["bank"] = c.bank.state_dict()
        if self.device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return payload

    def load_state_dict(self, payload: dict[str, Any]) -> None:
        c = self.c
        c.model.online.load_state_dict(payload["online"])
        c.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        for loss in c.losses:
            if isinstance(loss.fn, nn.Module):
                loss.fn.load_state_dict(payload["losses"][loss.name])
        for view, state in zip(c.views, payload["views"], strict=True):
            view.load_state_dict(state)
        if c.model.target is not None:
            c.model.target.load_state_dict(payload["target"])
        if c.pseudo is not None:
            c.pseudo.write(payload["pseudo"]["labels"], payload["pseudo"]["centroids"])
        if c.bank is not None:
            c.bank.load_state_dict(payload["bank"])
        torch.set_rng_state(payload["rng"])
        if "cuda_rng" in payload and self.device.type == "cuda":
            torch.cuda.set_rng_state(payload["cuda_rng"], self.device)
        self.global_step = payload["global_step"]
        self.start_epoch = payload["epoch"] + 1

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        """Train every remaining epoch of the stage; return the final evaluation."""
        cfg, c = self.train_cfg, self.c
        self._after_step = _lifecycle(c, "after_optimizer_step")
        on_epoch = _lifecycle(c, "on_epoch_start")
        c.model.online.train()
        if c.model.target is not None:
            c.model.target.network.train()
        result: dict[str, float] = {}
        for epoch in range(self.start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            for part in on_epoch:
                part.on_epoch_start(epoch, cfg.epochs)
            record: dict[str, Any] = {"stage": c.stage.name, "epoch": epoch}
            clus = c.stage.clusterer
            if clus is not None and ((epoch == 0 and clus.before_training)
                                     or (epoch > 0 and clus.every and epoch % clus.every == 0)):
                record.update(self.e_step(epoch))
            if clus is not None and not c.pseudo.ready and any(
                    need.kind == "labels" for loss in c.losses for need in loss.fn.needs()):
                record.update(self.e_step(epoch))
            sums = self._epoch(epoch)
            record.update({k: v for k, v in sums.items()})
            record.update(self.phases.take())
            record["seconds"] = time.perf_counter() - t0
            record["images_per_second"] = self.steps * self.batch_size / record["seconds"]
            last = epoch == cfg.epochs - 1
            if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
                result = self.evaluate()
                record.update(result)
            self.metrics.write(record, self.global_step)
            self.log(_summary(record, cfg.epochs))
            if last or (cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0):
                checkpoint.save_atomic(self.state_dict(epoch), self.checkpoint_path)
        if not result:
            result = self.evaluate()
        return result

    def _epoch(self, epoch: int) -> dict[str, float]:
        generator = torch.Generator().manual_seed(self.train_cfg.seed * 100_003 + epoch)
        order = self._order(generator)[:self.steps * self.batch_size]
        totals: dict[str, torch.Tensor] = {}
        loaded = self.phases.iterate("data", self.c.train_set.batches(order, self.batch_size))
        batches = tqdm(loaded, total=self.steps,
                       desc=f"{self.c.stage.name} epoch {epoch + 1}", leave=False,
                       disable=not self.progress, dynamic_ncols=True)
        for indices, images in batches:
            out = self.train_step(indices, images, epoch, generator)
            for key, value in out.items():
                totals[key] = totals.get(key, 0) + value
        return {k: float(v) / max(self.steps, 1) for k, v in totals.items()}

    def _order(self, generator: torch.Generator) -> torch.Tensor:
        """This epoch's image order: a shuffle, or (``sampler = "cluster_balanced"``) draws with
        replacement weighted ``w_i = N / |cluster(i)|`` from the last E-step (hadis.md §2.5)."""
        n = len(self.c.train_set)
        if self.train_cfg.sampler == "shuffle":
            return torch.randperm(n, generator=generator)
        labels = self.c.pseudo.labels.cpu()
        counts = torch.bincount(labels, minlength=self.c.n_clusters).float()
        weights = n / counts[labels]
        return torch.multinomial(weights, self.steps * self.batch_size, replacement=True,
                                 generator=generator)


def _summary(record: dict[str, Any], epochs: int) -> str:
    parts = [f"[{record['stage']}] epoch {record['epoch'] + 1}/{epochs}",
             f"loss {record.get('loss', float('nan')):.4f}"]
    for key in ("nmi", "acc", "ari"):
        if key in record:
            parts.append(f"{key.upper()} {record[key]:.4f}")
    parts.append(f"{record['images_per_second']:.0f} img/s")
    parts.append(f"{record['seconds']:.1f}s")
    return " | ".join(parts)
