"""E-step clusterers: features of the whole set → labels + centroids.

``KMeans`` is Euclidean k-means on faiss (CPU or GPU) or in torch; ``SphericalKMeans`` is the
cosine k-means of ProPos ``torch_clustering.PyTorchKMeans`` that HaDis and DigPro use for their
per-epoch E-step. Distances are computed
in row chunks so that N = 1M points with K = 1000 centres fit in memory on CPU and GPU; there,
on one CPU core, ``KMeans`` ran 5.2x faster than scikit-learn's at 20 equal iterations
(docs/benchmarks.md, "E-step at 1M (issue #23)").

Under torchrun both fit features split over the ranks (``fit_shard``, a
:class:`ShardedClusterer`): each rank assigns its own rows, the Lloyd step's sums, counts,
shift test and inertia are all-reduced, and rank 0 draws the k-means++ centres from the rows
gathered to it (``KMeans``'s seed sample) and broadcasts them. From the same centres that is
one process's fit, up to float rounding of the summed rows.
"""

from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Literal, Protocol, get_args, runtime_checkable

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans as SklearnKMeans

from corekit import distributed
from corekit.errors import ComponentError, did_you_mean

Backend = Literal["auto", "torch", "faiss", "sklearn"]
BACKENDS: tuple[str, ...] = get_args(Backend)
AssignPrecision = Literal["fp32", "bf16"]
ASSIGN_PRECISIONS: tuple[str, ...] = get_args(AssignPrecision)
_ASSIGN_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_BLOCK_ELEMENTS = 1 << 24  # entries of one chunk × K distance block (64 MiB in float32)
_FUSED_ROWS = 4096  # rows per block of the fused assign-and-sum pass (cache-sized)
_ASSIGN_ROWS = 1024  # rows per block of the Euclidean assignment (512-2048 within noise)
_GROUP_WIDTH = 32  # centres per group of the two-stage nearest-centre search
SEED_SAMPLE = 65_536  # KMeans.seed_sample default: rows the k-means++ seeding runs on
_TORCH_FROM_CLUSTERS = 192  # backend="auto" on CPU: torch from this K on, sklearn below

Distances = Callable[[torch.Tensor], torch.Tensor]


@attrs.frozen
class ClusterResult:
    """Output of one E-step.

    ``labels``: int64 (N,); ``centroids``: float32 (K×D); ``inertia``: Σ_i d(x_i, c_{y_i}) in the
    clusterer's own distance (squared Euclidean for ``KMeans``, ``1 − cos`` for
    ``SphericalKMeans``); ``n_iter``: Lloyd iterations run by the restart that produced it.
    """

    labels: torch.Tensor
    centroids: torch.Tensor
    inertia: float
    n_iter: int = 0


@runtime_checkable
class Clusterer(Protocol):
    """What the engine's E-step calls: ``fit`` on N×D features."""

    n_clusters: int

    def fit(self, features: torch.Tensor) -> ClusterResult: ...


@runtime_checkable
class ShardedClusterer(Protocol):
    """A clusterer that fits features split over torchrun's ranks: ``fit_shard`` gets this
    rank's rows (n_r, D), in rank order the whole set's, and returns their labels (n_r,) with
    the centroids and inertia of the whole set (the same on every rank); on one process it is
    ``fit``. ``shards()``: whether its settings let it (else the E-step fits on rank 0)."""

    def shards(self) -> bool: ...

    def fit_shard(self, features: torch.Tensor) -> ClusterResult: ...


def positive(_instance: object, attribute: attrs.Attribute, value: int) -> None:
    """An attrs validator: ``value`` must be at least 1."""
    if value < 1:
        raise ComponentError(f"{attribute.name} must be >= 1, got {value}")


def _non_negative(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ComponentError(f"{attribute.name} must be >= 0, got {value}")


def _one_of(choices: tuple[str, ...], what: str) -> Callable[[object, attrs.Attribute, str], None]:
    def check(_instance: object, _attribute: attrs.Attribute, value: str) -> None:
        if value not in choices:
            raise ComponentError(f"unknown {what} {value!r}; {did_you_mean(value, choices)}")

    return check


def _as_matrix(features: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """``features`` (n, D) as contiguous float32; the samples of every rank together must be
    at least ``n_clusters``."""
    if features.dim() != 2:
        raise ValueError(f"features must be N×D, got shape {tuple(features.shape)}")
    total = _offset_and_total(features)[1]
    if total < n_clusters:
        raise ValueError(f"{total} samples cannot form {n_clusters} clusters")
    return features.detach().to(torch.float32).contiguous()


def _offset_and_total(x: torch.Tensor) -> tuple[int, int]:
    """The position of this rank's first row of ``x`` (n_r, D) among every rank's rows (rank
    order) and their total: (0, n) on one process."""
    sizes = distributed.gather_rows(torch.tensor([len(x)], device=x.device)).tolist()
    return sum(sizes[: distributed.rank()]), sum(sizes)


def _seeded_on_main(rows: torch.Tensor, seed: Callable[[torch.Tensor], torch.Tensor],
                    shape: tuple[int, int]) -> torch.Tensor:
    """The centres ``seed(all rows)`` of ``shape`` (K, D), ``rows`` (n_r, ·) this rank's: run
    on rank 0 over every rank's rows gathered there (rank order) and broadcast; ``seed(rows)``
    on one process."""
    gathered = distributed.gather_to_main(rows)
    return distributed.on_main(lambda: seed(gathered), rows, shape)


def _farthest(x: torch.Tensor, mins: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` rows (count, D) of ``x`` (n_r, D) farthest from their centres
    (``mins`` (n_r,)) over every rank, farthest first."""
    if not distributed.is_distributed():
        return x[torch.topk(mins, count).indices]
    local = torch.topk(mins, min(count, len(mins))).indices
    far = distributed.gather_rows(mins[local])
    rows = distributed.gather_rows(x[local])
    return rows[torch.topk(far, count).indices]


def _changed(labels: torch.Tensor, previous: torch.Tensor) -> bool:
    """Whether any rank's labels changed."""
    return bool(distributed.all_reduce((labels != previous).sum()) > 0)


def _chunks(
    x: torch.Tensor, n_clusters: int, max_rows: int | None = None
) -> Iterator[torch.Tensor]:
    rows = max(1, _BLOCK_ELEMENTS // n_clusters)
    yield from x.split(rows if max_rows is None else min(rows, max_rows))


def _kmeans_plusplus(
    x: torch.Tensor, n_clusters: int, generator: torch.Generator, distances: Distances
) -> torch.Tensor:
    """Greedy k-means++ (``2 + ⌊ln K⌋`` local trials), sampling proportional to ``distances``.

    ``distances(c)`` maps M candidate rows to their (N, M) distances from every row of ``x``
    (N, D) (so that the large product is ``x @ cᵀ``: about twice as fast on CPU as ``c @ xᵀ``).
    Random draws come from ``generator``, a CPU generator, so a seed gives the same centres on
    every device.
    """
    n_samples = x.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    first = int(torch.randint(n_samples, (1,), generator=generator))
    chosen = [first]
    closest = distances(x[first : first + 1])[:, 0]
    potential = closest.sum(dtype=torch.float64)
    for _ in range(1, n_clusters):
        draws = torch.rand(n_trials, generator=generator).to(x.device, torch.float64) * potential
        cumulative = torch.cumsum(closest, dim=0, dtype=torch.float64)
        candidates = torch.searchsorted(cumulative, draws).clamp_(max=n_samples - 1)
        trial = torch.minimum(closest.unsqueeze(1), distances(x[candidates]))
        trial_potential = trial.sum(dim=0, dtype=torch.float64)
        best = int(torch.argmin(trial_potential))
        potential = trial_potential[best]
        closest = trial[:, best].contiguous()
        chosen.append(int(candidates[best]))
    return x[torch.tensor(chosen, device=x.device)].clone()


def _squared_euclidean_to(x: torch.Tensor, x_sq: torch.Tensor) -> Distances:
    def distances(rows: torch.Tensor) -> torch.Tensor:
        d = torch.addmm(x_sq.unsqueeze(1), x, rows.T, alpha=-2.0)
        return d.add_(rows.pow(2).sum(dim=1)).clamp_(min=0.0)

    return distances


def _cosine_to(x_unit: torch.Tensor) -> Distances:
    def distances(rows: torch.Tensor) -> torch.Tensor:
        return (1.0 - x_unit @ rows.T).clamp_(min=0.0)

    return distances


def _mean_variance(x: torch.Tensor, correction: int) -> float:
    """``mean_d Var(X[:, d])`` in one centred pass (torch's column-wise ``var`` is ~30× slower
    on CPU); ``correction`` is Bessel's, as in ``torch.var``. Under torchrun over every rank's
    rows (sums all-reduced in float64)."""
    if distributed.is_distributed():
        total = _offset_and_total(x)[1]
        mean = distributed.all_reduce(x.sum(dim=0, dtype=torch.float64)) / total
        squares = distributed.all_reduce((x - mean.to(x.dtype)).pow(2).sum(dtype=torch.float64))
        return float(squares) / (x.shape[1] * max(total - correction, 1))
    centred = x - x.mean(dim=0)
    return float(centred.pow(2).sum(dtype=torch.float64)) / (
        x.shape[1] * max(x.shape[0] - correction, 1)
    )


def centre_scores(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``rows @ weightᵀ + bias``, (R, K) from rows (R, D), weight (K, D) and bias (K,), all of
    one dtype (fp32, or bf16 with fp32 accumulation and a bf16 result).

    On CPU this is oneDNN's GEMM with the bias fused (``mkldnn._linear_pointwise``, the op
    torch's own compiler emits for linear layers): in fp32 on the AMD reference CPU it ran at
    2.1-2.3x the throughput of ``torch.addmm``, which goes to MKL there (about 230 against 100
    GFLOP/s at 1024 × 128 × 1000 on one thread), with the same fp32 arithmetic; in bf16 at about
    470 GFLOP/s.
    """
    if rows.is_cpu and torch.backends.mkldnn.is_available():
        return torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")
    return torch.addmm(bias, rows, weight.T)


def _grouped_min(grouped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row minima and their column in the flat (R, G·W) view of ``grouped`` (R, G, W).

    Two stages: the minimum over the G groups at each of the W positions (a vectorised
    reduction), then ``min`` over those W and an ``argmin`` over the G entries of the winning
    position. On CPU this took 0.2 ms per 1024 × 1024 block against 0.65 ms for a plain
    ``min(dim=1)``, which torch does not vectorise. The value is the exact minimum; among tied
    columns the one at the lowest position within its group wins.
    """
    width = grouped.shape[2]
    low, position = grouped.amin(dim=1).min(dim=1)
    rows = torch.arange(len(grouped), device=grouped.device)
    group = grouped[rows, :, position].argmin(dim=1)
    return low, group * width + position


def _assign_euclidean(
    x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, gemm_rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest of ``centroids`` (K, D) for each row of ``x`` (N, D): labels (N,) and squared
    distances (N,); ``x_sq`` (N,) holds the rows' squared norms.

    Each block of rows gets ``‖c‖² − 2 x·c`` from one GEMM on ``gemm_rows`` (N, D), which is
    ``x`` itself or a bf16 copy of it (:func:`centre_scores`), and its minimum from
    :func:`_grouped_min`; the K centres are padded to G groups of ``min(K, 32)`` with centres at
    infinite distance. With fp32 rows the distance is ``‖x‖² + ‖c‖² − 2 x·c`` of that GEMM; with
    bf16 rows (whose GEMM rounds its output to bf16) it is recomputed as the exact fp32
    ``‖x − c_y‖²`` of the label found.
    """
    n_clusters, dim = centroids.shape
    width = min(n_clusters, _GROUP_WIDTH)
    groups = math.ceil(n_clusters / width)
    weight = centroids.new_zeros(groups * width, dim)
    weight[:n_clusters] = -2.0 * centroids
    bias = centroids.new_full((groups * width,), math.inf)
    bias[:n_clusters] = centroids.pow(2).sum(dim=1)
    weight, bias = weight.to(gemm_rows.dtype), bias.to(gemm_rows.dtype)
    exact = gemm_rows.dtype == torch.float32
    labels, mins = [], []
    blocks = (_chunks(t, len(bias), _ASSIGN_ROWS) for t in (x, x_sq, gemm_rows))
    for rows, rows_sq, gemm in zip(*blocks, strict=True):
        scores = centre_scores(gemm, weight, bias).float().view(len(rows), groups, width)
        low, arg = _grouped_min(scores)
        labels.append(arg)
        if exact:
            mins.append((low + rows_sq).clamp_(min=0.0))
        else:
            mins.append((rows - centroids[arg]).pow_(2).sum(dim=1))
    return torch.cat(labels), torch.cat(mins)


def _assign_cosine(
    x_unit: torch.Tensor, centroids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labels and ``1 − cos`` distances to the nearest centre, plus the per-cluster sums and
    counts of the new assignment, in one pass over row blocks small enough to stay in cache
    while they are summed: the pass measured 19–24% faster than assigning and then summing,
    whole spherical fits 5–16% faster (N ≤ 70k, K ≤ 100, two threads)."""
    unit = F.normalize(centroids, dim=1)
    n_clusters = len(centroids)
    sums = torch.zeros(n_clusters, x_unit.shape[1], dtype=x_unit.dtype, device=x_unit.device)
    labels, mins = [], []
    for rows in _chunks(x_unit, n_clusters, _FUSED_ROWS):
        high, arg = (rows @ unit.T).max(dim=1)
        sums.index_add_(0, arg, rows)
        labels.append(arg)
        mins.append((1.0 - high).clamp_(min=0.0))
    labels_all = torch.cat(labels)
    counts = torch.bincount(labels_all, minlength=n_clusters).to(x_unit.dtype)
    return labels_all, torch.cat(mins), sums, counts


def _sums_and_counts(
    x: torch.Tensor, labels: torch.Tensor, n_clusters: int
) -> tuple[torch.Tensor, torch.Tensor]:
    sums = torch.zeros(n_clusters, x.shape[1], dtype=x.dtype, device=x.device)
    sums.index_add_(0, labels, x)
    return sums, torch.bincount(labels, minlength=n_clusters).to(x.dtype)


def _faiss() -> ModuleType | None:
    try:
        return importlib.import_module("faiss")
    except ImportError:
        return None


def _faiss_has_gpu(faiss: ModuleType) -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@attrs.frozen
class KMeans:
    """Euclidean k-means (faiss when present, GPU when present).

    Every restart (seeds ``seed .. seed + n_init − 1``) starts from greedy k-means++ centres
    (``2 + ⌊ln K⌋`` trials on squared distances, in torch); the lowest final inertia wins.
    ``seed_sample`` (default 65,536): the seeding runs on that many rows drawn without
    replacement when N is larger, on all rows otherwise (so sets of up to 65,536 rows, CIFAR's
    60k and digits included, seed exactly as before the option existed). Greedy k-means++ makes
    K passes over the rows it seeds on; at N = 200k, K = 1000 that was two thirds of a
    20-iteration scikit-learn fit (26.7 of 39.7 CPU s, one thread). On a subsample, the final
    inertia after 20 iterations (N = 200k, K = 1000, overlapping blobs) was 1.5% above
    scikit-learn's full-set k-means++ at 8 rows per cluster, 0.5% at 16 and within ±0.1% (the
    spread between two scikit-learn seeds) from 32 on, as for our own full-set seeding; raise
    ``seed_sample`` above 32·K for larger K.
    ``backend="torch"``: Lloyd iterations until the labels stop changing, the squared centre
    shift falls to ``tol · mean_d Var(X[:, d])`` (scikit-learn's rule) or ``max_iter`` is
    reached; an empty cluster moves onto the point farthest from its centre. Each assignment
    is one fp32 GEMM per block of rows (oneDNN on CPU, :func:`centre_scores`; about 230 GFLOP/s on
    one core of the AMD reference CPU, its fp32 peak) and a two-stage nearest-centre search
    (:func:`_grouped_min`): at N = 200k, K = 1000 an assignment ran at about 170 GFLOP/s
    against 85 for an iteration of scikit-learn's loop.
    ``assign_precision="bf16"`` runs that GEMM on bf16 copies of the rows and centres, which
    picks a different label for 0.2-0.3% of the rows (near-ties; inertia +1e-6 relative at
    N = 200k, K = 1000) and made an assignment about 1.3x faster there (the GEMM alone 2x; a
    20-iteration fit at N = 1M 1.2x); the distances, centroid update, shift and inertia stay
    fp32. bf16 needs a CPU with bf16
    instructions (``corekit.engine.devices.cpu_has_native_bf16``); elsewhere torch emulates
    it, orders of magnitude slower. Only the torch backend reads it.
    ``backend="sklearn"``: scikit-learn's Lloyd loop (``KMeans(algorithm="lloyd")``, the same
    stopping and empty-cluster rules) from those centres, CPU only (features are copied to the
    host and the result moved back).
    ``backend="faiss"``: ``faiss.Kmeans`` from those centres (exactly ``max_iter`` iterations,
    no subsampling, empty clusters split; faiss's random init is not used, it lands in poor
    local minima on well-separated mixtures), on the GPU when the features are on CUDA and faiss
    has GPU support.
    ``backend="auto"``: faiss-GPU for CUDA features when available, else torch on CUDA; for CPU
    features torch from K = 192 clusters on and ``sklearn`` below. That deviates from
    "faiss when present" on purpose: on the 2-core reference CPU, scikit-learn's
    fused Lloyd loop was 1.5-2x faster than faiss at K = 10 and on par at K = 100, and faster
    than the torch loop up to K = 100 (N = 10k-70k, one thread; a tie at K = 128), where the
    rows-by-K block is too thin for the GEMM to pay for its extra passes; from K = 192 the
    torch loop was faster (6% at K = 192, 12% at 300, 2x per iteration at 1000). The result
    lies on the features' device; ``inertia`` is the sum of squared distances.
    """

    n_clusters: int = attrs.field(validator=positive)
    n_init: int = attrs.field(default=3, validator=positive)
    max_iter: int = attrs.field(default=100, validator=positive)
    tol: float = attrs.field(default=1e-4, validator=_non_negative)
    seed: int = 0
    backend: Backend = attrs.field(default="auto", validator=_one_of(BACKENDS, "k-means backend"))
    seed_sample: int = attrs.field(default=SEED_SAMPLE, validator=positive)
    assign_precision: AssignPrecision = attrs.field(
        default="fp32", validator=_one_of(ASSIGN_PRECISIONS, "assignment precision")
    )

    def resolved_backend(self, device: torch.device) -> str:
        """The backend ``fit`` will use for features on ``device``."""
        if self.backend != "auto":
            return self.backend
        if device.type == "cpu":
            return "torch" if self.n_clusters >= _TORCH_FROM_CLUSTERS else "sklearn"
        faiss = _faiss()
        return "faiss" if faiss is not None and _faiss_has_gpu(faiss) else "torch"

    def fit(self, features: torch.Tensor) -> ClusterResult:
        """Cluster N×D ``features`` (all of them, also under torchrun: no collective);
        labels, centroids and inertia on the features' device."""
        with distributed.alone():
            x = _as_matrix(features, self.n_clusters)
            x_sq = x.pow(2).sum(dim=1)
            inits = (self._seeding(x, x_sq, self.seed + r) for r in range(self.n_init))
            backend = self.resolved_backend(x.device)
            if backend == "faiss":
                runs = self._faiss_runs(x, inits)
            elif backend == "sklearn":
                runs = self._sklearn_runs(x, inits)
            else:
                runs = self._torch_runs(x, x_sq, inits)
            return min(runs, key=lambda result: result.inertia)

    def shards(self) -> bool:
        """Whether ``fit_shard`` runs: the torch backend, which ``auto`` picks under torchrun
        (``faiss`` and ``sklearn`` fit on rank 0, and only when asked)."""
        return self.backend in ("auto", "torch")

    def fit_shard(self, features: torch.Tensor) -> ClusterResult:
        """The torch backend's fit of every rank's rows, ``features`` (n_r, D) this rank's
        (``ShardedClusterer``): labels (n_r,) of this rank's rows; centroids and inertia of
        the whole set, on every rank. ``fit`` with ``backend = "torch"`` on one process."""
        x = _as_matrix(features, self.n_clusters)
        x_sq = x.pow(2).sum(dim=1)
        inits = (self._seeding(x, x_sq, self.seed + r) for r in range(self.n_init))
        return min(self._torch_runs(x, x_sq, inits), key=lambda result: result.inertia)

    def _torch_runs(self, x: torch.Tensor, x_sq: torch.Tensor,
                    inits: Iterator[torch.Tensor]) -> Iterator[ClusterResult]:
        """The torch Lloyd loop from each of ``inits`` on rows ``x`` (n, D) with squared
        norms ``x_sq`` (n,)."""
        tol = _mean_variance(x, correction=0) * self.tol if self.tol else 0.0
        gemm_rows = x.to(_ASSIGN_DTYPES[self.assign_precision])
        return (self._lloyd(x, x_sq, gemm_rows, init, tol) for init in inits)

    def _seeding(self, x: torch.Tensor, x_sq: torch.Tensor, seed: int) -> torch.Tensor:
        """k-means++ centres (K, D) of one restart, on ``seed_sample`` rows drawn without
        replacement when there are more (``x`` (n, D), ``x_sq`` (n,) its squared norms).
        Under torchrun the draw is over every rank's rows and rank 0 seeds on the drawn rows
        gathered to it (``_seeded_on_main``)."""
        generator = torch.Generator().manual_seed(seed)
        offset, total = _offset_and_total(x)
        if total > self.seed_sample:
            drawn = torch.randperm(total, generator=generator)[: self.seed_sample]
            rows = drawn.sort().values
            rows = (rows[(rows >= offset) & (rows < offset + len(x))] - offset).to(x.device)
            x, x_sq = x[rows], x_sq[rows]

        def seed_rows(both: torch.Tensor) -> torch.Tensor:
            rows, rows_sq = both[:, :-1].contiguous(), both[:, -1].contiguous()
            return _kmeans_plusplus(rows, self.n_clusters, generator,
                                    _squared_euclidean_to(rows, rows_sq))

        return _seeded_on_main(torch.cat([x, x_sq.unsqueeze(1)], dim=1), seed_rows,
                               (self.n_clusters, x.shape[1]))

    def _lloyd(
        self,
        x: torch.Tensor,
        x_sq: torch.Tensor,
        gemm_rows: torch.Tensor,
        centroids: torch.Tensor,
        tol: float,
    ) -> ClusterResult:
        """Lloyd iterations from ``centroids`` (K, D); under torchrun ``x`` (n_r, D) is this
        rank's share, and the sums, counts, farthest rows, label changes and inertia are
        every rank's."""
        labels, mins = _assign_euclidean(x, x_sq, centroids, gemm_rows)
        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            sums, counts = _sums_and_counts(x, labels, self.n_clusters)
            sums, counts = distributed.all_reduce(sums), distributed.all_reduce(counts)
            updated = sums / counts.clamp(min=1.0).unsqueeze(1)
            empty = torch.nonzero(counts == 0).flatten()
            if len(empty):
                updated[empty] = _farthest(x, mins, len(empty))
            shift = float((updated - centroids).pow(2).sum())
            centroids = updated
            new_labels, mins = _assign_euclidean(x, x_sq, centroids, gemm_rows)
            converged = not _changed(new_labels, labels) or shift <= tol
            labels = new_labels
            if converged:
                break
        inertia = distributed.all_reduce(mins.sum(dtype=torch.float64))
        return ClusterResult(labels, centroids, float(inertia), n_iter)

    def _sklearn_runs(
        self, x: torch.Tensor, inits: Iterator[torch.Tensor]
    ) -> Iterator[ClusterResult]:
        data = x.cpu().numpy()
        for init in inits:
            model = SklearnKMeans(
                self.n_clusters,
                init=init.cpu().numpy(),
                n_init=1,
                max_iter=self.max_iter,
                tol=self.tol,
                algorithm="lloyd",
            ).fit(data)
            yield ClusterResult(
                labels=torch.from_numpy(model.labels_.astype(np.int64)).to(x.device),
                centroids=torch.from_numpy(model.cluster_centers_.astype(np.float32)).to(x.device),
                inertia=float(model.inertia_),
                n_iter=int(model.n_iter_),
            )

    def _faiss_runs(
        self, x: torch.Tensor, inits: Iterator[torch.Tensor]
    ) -> Iterator[ClusterResult]:
        faiss = _faiss()
        if faiss is None:
            raise ComponentError(
                "k-means backend 'faiss' needs faiss: pip install 'deepclust[faiss]' "
                "(or backend='torch')"
            )
        data = x.cpu().numpy()
        n_samples, dim = data.shape
        for init in inits:
            kmeans = faiss.Kmeans(
                dim,
                self.n_clusters,
                niter=self.max_iter,
                nredo=1,
                seed=self.seed,
                spherical=False,
                min_points_per_centroid=1,
                max_points_per_centroid=max(256, math.ceil(n_samples / self.n_clusters)),
                gpu=x.device.type == "cuda" and _faiss_has_gpu(faiss),
            )
            kmeans.train(data, init_centroids=init.cpu().numpy())
            distances, labels = kmeans.index.search(data, 1)
            yield ClusterResult(
                labels=torch.from_numpy(labels[:, 0].astype(np.int64)).to(x.device),
                centroids=torch.from_numpy(kmeans.centroids.astype(np.float32)).to(x.device),
                inertia=float(distances.sum(dtype=np.float64)),
                n_iter=self.max_iter,
            )


@attrs.frozen
class SphericalKMeans:
    """Cosine k-means of ProPos ``torch_clustering.PyTorchKMeans``.

    Inputs are L2-normalised; ``d(x, c) = 1 − x·n̂(c)``; centres are plain means of their members
    (an empty cluster gets the zero centre, at distance 1 from every point). k-means++ init with
    ``2 + ⌊ln K⌋`` local trials sampling proportional to the cosine distance; restarts with seeds
    ``seed .. seed + n_init − 1``; each restart stops when the labels stop changing or when
    ``Σ_c (1 − cos(c_old, c_new)) ≤ tol · mean_d Var(X[:, d])``; the result is the
    lowest-inertia (centres, labels) state seen at any iteration of any restart.
    """

    n_clusters: int = attrs.field(validator=positive)
    n_init: int = attrs.field(default=10, validator=positive)
    max_iter: int = attrs.field(default=300, validator=positive)
    tol: float = attrs.field(default=1e-4, validator=_non_negative)
    seed: int = 0

    def fit(self, features: torch.Tensor) -> ClusterResult:
        """Cluster N×D ``features`` (normalised here; all of them, also under torchrun: no
        collective); result on the features' device."""
        with distributed.alone():
            return self.fit_shard(features)

    def shards(self) -> bool:
        """Always: ``fit_shard`` fits every rank's rows."""
        return True

    def fit_shard(self, features: torch.Tensor) -> ClusterResult:
        """The fit of every rank's rows, ``features`` (n_r, D) this rank's
        (``ShardedClusterer``): labels (n_r,) of this rank's rows; centroids and inertia of
        the whole set, on every rank (k-means++ on rank 0 over the rows gathered to it). ``fit``
        on one process."""
        x = F.normalize(_as_matrix(features, self.n_clusters), dim=1)
        tol = _mean_variance(x, correction=1) * self.tol if self.tol else 0.0
        restarts = (self._states(x, self.seed + r, tol) for r in range(self.n_init))
        return min(itertools.chain.from_iterable(restarts), key=lambda state: state.inertia)

    def _states(self, x: torch.Tensor, seed: int, tol: float) -> Iterator[ClusterResult]:
        """Every (means, labels) state of one restart, in iteration order; the sums, counts,
        label changes and inertia are every rank's."""
        generator = torch.Generator().manual_seed(seed)
        centroids = _seeded_on_main(
            x, lambda rows: _kmeans_plusplus(rows, self.n_clusters, generator, _cosine_to(rows)),
            (self.n_clusters, x.shape[1]))
        labels, _, sums, counts = self._assigned(x, centroids)
        for n_iter in range(1, self.max_iter + 1):
            means = sums / torch.where(counts > 0, counts, 1e-6).unsqueeze(1)
            new_labels, mins, sums, counts = self._assigned(x, means)
            inertia = distributed.all_reduce(mins.sum(dtype=torch.float64))
            yield ClusterResult(new_labels, means, float(inertia), n_iter)
            cosines = (F.normalize(centroids, dim=1) * F.normalize(means, dim=1)).sum(dim=1)
            shift = float((1.0 - cosines).sum())
            if not _changed(new_labels, labels) or shift <= tol:
                return
            labels, centroids = new_labels, means

    @staticmethod
    def _assigned(x: torch.Tensor, centroids: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``_assign_cosine`` with the sums and counts of every rank."""
        labels, mins, sums, counts = _assign_cosine(x, centroids)
        return labels, mins, distributed.all_reduce(sums), distributed.all_reduce(counts)
