"""The ``targets`` state: pseudo-label rows ``(index, label, weight)`` that a dataset-level
labeler writes and a loss reads through ``step.targets(NAME)``."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from corekit.errors import ComponentError

UNLABELLED = -1


@attrs.frozen
class LabelRows:
    """Rows ``(index, label, weight)``, each (R,): image ``index[r]`` is given cluster
    ``label[r]`` with weight ``weight[r]`` (1 for a plain label). An index may appear several
    times or not at all. What a dataset-level labeler returns, indices into its inputs."""

    index: torch.Tensor
    label: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def of(cls, index: torch.Tensor, label: torch.Tensor,
           weight: torch.Tensor | None = None) -> LabelRows:
        """Rows from (R,) ``index`` and ``label``, weight 1 unless given (R,)."""
        index, label = index.reshape(-1).long(), label.reshape(-1).long()
        if index.shape != label.shape:
            raise ComponentError(f"label rows: {index.numel()} indices for {label.numel()} "
                                 "labels")
        weight = torch.ones(index.shape, device=index.device) if weight is None \
            else weight.reshape(-1).float()
        return cls(index, label, weight.to(index.device))

    def at(self, indices: torch.Tensor) -> LabelRows:
        """These rows with ``index`` mapped through ``indices`` (M,): a labeler that saw the
        images ``indices`` numbers them 0..M-1."""
        return LabelRows(indices.to(self.index.device)[self.index], self.label, self.weight)


@attrs.frozen
class BatchTargets:
    """The targets of one batch of B images: ``labels`` (B,) (``-1`` where none), ``mask`` (B,)
    bool (which images carry one) and ``weight`` (B,) (0 where none)."""

    labels: torch.Tensor
    mask: torch.Tensor
    weight: torch.Tensor


class Targets(nn.Module):
    """``[state.NAME] type = "targets"``: the rows a dataset-level labeler
    (``[pseudo_labeler.X] writes = "NAME"``) wrote last, checkpointed with the run, saved in
    the stage's outputs and carried by ``init_from`` like any state.

    ``ready`` means written (once), not "every image labelled": a labeler that keeps only its
    confident images leaves the others without a row. ``of(indices)`` reads a batch: where an
    image has several rows, the last one written counts."""

    def __init__(self, n_images: int, n_clusters: int) -> None:
        super().__init__()
        self.n_images, self.n_clusters = n_images, n_clusters
        self.register_buffer("index", torch.zeros(0, dtype=torch.long))
        self.register_buffer("label", torch.zeros(0, dtype=torch.long))
        self.register_buffer("weight", torch.zeros(0))
        self.register_buffer("written", torch.tensor(False))
        # one label and weight per image, rebuilt at each write (not saved: the rows are)
        self.register_buffer("per_image_label", torch.full((n_images,), UNLABELLED),
                             persistent=False)
        self.register_buffer("per_image_weight", torch.zeros(n_images), persistent=False)

    def write(self, rows: LabelRows) -> None:
        """Replace the rows; indices must lie in [0, n_images) and labels in [0, n_clusters)."""
        if rows.index.numel() and (int(rows.index.min()) < 0
                                   or int(rows.index.max()) >= self.n_images):
            raise ComponentError(f"targets: row indices must lie in [0, {self.n_images})")
        if rows.label.numel() and (int(rows.label.min()) < 0
                                   or int(rows.label.max()) >= self.n_clusters):
            raise ComponentError(f"targets: labels must lie in [0, {self.n_clusters})")
        device = self.written.device
        self.index = rows.index.to(device, torch.long)
        self.label = rows.label.to(device, torch.long)
        self.weight = rows.weight.to(device, torch.float32)
        self.written = torch.tensor(True, device=device)
        last = torch.full((self.n_images,), -1, device=device)  # each image's last row
        last.scatter_reduce_(0, self.index, torch.arange(len(self.index), device=device), "amax")
        has = last >= 0
        self.per_image_label = torch.full((self.n_images,), UNLABELLED, device=device)
        self.per_image_weight = torch.zeros(self.n_images, device=device)
        self.per_image_label[has] = self.label[last[has]]
        self.per_image_weight[has] = self.weight[last[has]]

    @property
    def ready(self) -> bool:
        """Whether a labeler has written the rows (``False`` before the first write)."""
        return bool(self.written)

    def rows(self) -> LabelRows:
        """Every row, in the order written."""
        return LabelRows(self.index, self.label, self.weight)

    def of(self, indices: torch.Tensor) -> BatchTargets:
        """The targets of the images ``indices`` (B,)."""
        at = indices.to(self.per_image_label.device)
        labels = self.per_image_label[at]
        return BatchTargets(labels, labels >= 0, self.per_image_weight[at])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: Any,
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        """The row buffers change length with each write: loaded by ``write``."""
        keys = [prefix + k for k in ("index", "label", "weight", "written")]
        missing = [k for k in keys if k not in state_dict]
        if missing:
            missing_keys.extend(missing)
            return
        if bool(state_dict[keys[3]]):
            self.write(LabelRows(state_dict[keys[0]], state_dict[keys[1]], state_dict[keys[2]]))
