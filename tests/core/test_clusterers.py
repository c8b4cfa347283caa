"""E-step clusterers: hadis C8, blob recovery, sklearn parity, empty clusters, backends."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.metrics import adjusted_rand_score

from corekit.components import clusterers
from corekit.components.clusterers import Clusterer, ClusterResult, KMeans, SphericalKMeans
from corekit.errors import ComponentError

HAS_FAISS = clusterers._faiss() is not None
BACKENDS = [
    "torch",
    "sklearn",
    pytest.param("faiss", marks=pytest.mark.skipif(not HAS_FAISS, reason="no faiss")),
]


def unit(*degrees: float) -> torch.Tensor:
    radians = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([radians.cos(), radians.sin()], dim=1).float()


def blobs(n_per: int = 100, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.zeros(3, dim)
    centres[0, 0], centres[1, 1], centres[2, 2] = 20.0, 20.0, 20.0
    truth = torch.arange(3).repeat_interleave(n_per)
    return centres[truth] + torch.randn(len(truth), dim, generator=generator), truth


def mixture(
    n: int = 1000, dim: int = 16, k: int = 8, seed: int = 1, spread: float = 3.0
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = spread * torch.randn(k, dim, generator=generator)
    return centres[torch.randint(k, (n,), generator=generator)] + torch.randn(
        n, dim, generator=generator
    )


def test_hadis_c8_spherical_kmeans() -> None:
    x = unit(0, 10, 20, 100, 110, 120, 250, 260)
    result = SphericalKMeans(n_clusters=3).fit(x)
    labels = result.labels.tolist()
    groups = sorted(sorted(i for i in range(8) if labels[i] == c) for c in set(labels))
    assert groups == [[0, 1, 2], [3, 4, 5], [6, 7]]
    order = [labels[0], labels[3], labels[6]]
    centres = result.centroids[order].double()
    angles = torch.atan2(centres[:, 1], centres[:, 0]).rad2deg()
    assert angles.tolist() == pytest.approx([10.0, 110.0, -105.0], abs=1e-4)
    assert centres.norm(dim=1).tolist() == pytest.approx([0.989872, 0.989872, 0.996195], abs=1e-5)
    assert result.inertia == pytest.approx(0.068379, abs=1e-5)
    assert result.inertia == pytest.approx(
        4 * (1 - math.cos(math.radians(10))) + 2 * (1 - math.cos(math.radians(5))), abs=1e-6
    )


def test_spherical_kmeans_normalises_inputs() -> None:
    x = unit(0, 10, 20, 100, 110, 120, 250, 260)
    scales = torch.tensor([1.0, 3.0, 0.5, 2.0, 7.0, 0.1, 4.0, 1.5]).unsqueeze(1)
    plain, scaled = SphericalKMeans(3).fit(x), SphericalKMeans(3).fit(x * scales)
    assert torch.equal(plain.labels, scaled.labels)
    assert scaled.inertia == pytest.approx(plain.inertia, abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_recovers_blobs(backend: str) -> None:
    x, truth = blobs()
    result = KMeans(n_clusters=3, backend=backend).fit(x)
    assert adjusted_rand_score(truth.numpy(), result.labels.numpy()) == 1.0
    assert result.labels.dtype == torch.int64 and result.labels.shape == (300,)
    assert result.centroids.dtype == torch.float32 and result.centroids.shape == (3, 8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_inertia_matches_sklearn(backend: str) -> None:
    x = mixture()
    reference = SklearnKMeans(8, n_init=3, random_state=0).fit(x.numpy()).inertia_
    result = KMeans(n_clusters=8, backend=backend).fit(x)
    assert result.inertia == pytest.approx(reference, rel=0.01)
    recomputed = (x - result.centroids[result.labels]).pow(2).sum()
    assert result.inertia == pytest.approx(float(recomputed), rel=1e-4)


def test_spherical_kmeans_recovers_blobs() -> None:
    x, truth = blobs()
    result = SphericalKMeans(n_clusters=3, n_init=2).fit(x)
    assert adjusted_rand_score(truth.numpy(), result.labels.numpy()) == 1.0


def distinct_points_with_repeats() -> torch.Tensor:
    return unit(0, 90, 200).repeat(4, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_more_clusters_than_distinct_points(backend: str) -> None:
    result = KMeans(n_clusters=5, backend=backend).fit(distinct_points_with_repeats())
    assert torch.isfinite(result.centroids).all()
    assert math.isfinite(result.inertia) and result.inertia == pytest.approx(0.0, abs=1e-5)
    assert len(set(result.labels.tolist())) == 3


def test_spherical_kmeans_empty_cluster_gets_zero_centre() -> None:
    result = SphericalKMeans(n_clusters=5, n_init=3).fit(distinct_points_with_repeats())
    assert torch.isfinite(result.centroids).all()
    assert result.inertia == pytest.approx(0.0, abs=1e-5)
    used = set(result.labels.tolist())
    assert len(used) == 3
    empty = [c for c in range(5) if c not in used]
    assert torch.equal(result.centroids[empty], torch.zeros(2, 2))


def test_chunked_distances_match_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    x = mixture(n=500)
    whole = (KMeans(8, backend="torch").fit(x), SphericalKMeans(8, n_init=2).fit(x))
    monkeypatch.setattr(clusterers, "_BLOCK_ELEMENTS", 8 * 96)
    chunked = (KMeans(8, backend="torch").fit(x), SphericalKMeans(8, n_init=2).fit(x))
    for a, b in zip(whole, chunked, strict=True):
        assert torch.equal(a.labels, b.labels)
        assert torch.allclose(a.centroids, b.centroids, atol=1e-5)


def test_auto_backend_is_sklearn_on_cpu_and_torch_on_cuda_without_faiss_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert KMeans(3).resolved_backend(torch.device("cpu")) == "sklearn"
    assert KMeans(191).resolved_backend(torch.device("cpu")) == "sklearn"
    assert KMeans(192).resolved_backend(torch.device("cpu")) == "torch"
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert KMeans(3).resolved_backend(torch.device("cuda")) == "torch"
    assert KMeans(3, backend="faiss").resolved_backend(torch.device("cpu")) == "faiss"


def test_faiss_backend_without_faiss_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    x, truth = blobs(n_per=30)
    assert adjusted_rand_score(truth.numpy(), KMeans(3).fit(x).labels.numpy()) == 1.0
    with pytest.raises(ComponentError, match="faiss"):
        KMeans(3, backend="faiss").fit(x)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: KMeans(8, backend="torch", seed=seed),
        lambda seed: KMeans(8, backend="torch", seed=seed, seed_sample=300),
        lambda seed: KMeans(8, backend="torch", seed=seed, assign_precision="bf16"),
        lambda seed: KMeans(8, backend="sklearn", seed=seed),
        pytest.param(
            lambda seed: KMeans(8, backend="faiss", seed=seed),
            marks=pytest.mark.skipif(not HAS_FAISS, reason="no faiss"),
        ),
        lambda seed: SphericalKMeans(8, n_init=3, seed=seed),
    ],
    ids=["torch", "torch-seed-sample", "torch-bf16", "sklearn", "faiss", "spherical"],
)
def test_same_seed_same_result(make: Callable[[int], Clusterer]) -> None:
    x = mixture(n=800)
    first, second = make(3).fit(x), make(3).fit(x)
    assert torch.equal(first.labels, second.labels)
    assert torch.equal(first.centroids, second.centroids)
    assert first.inertia == second.inertia


def test_sklearn_backend_runs_scikit_learns_lloyd_from_our_seeding() -> None:
    """Same start, same rule: the torch and sklearn backends end in the same partition."""
    x = mixture(n=600)
    ours = KMeans(8, n_init=1, backend="torch").fit(x)
    lloyd = KMeans(8, n_init=1, backend="sklearn").fit(x)
    assert adjusted_rand_score(ours.labels.numpy(), lloyd.labels.numpy()) == 1.0
    assert lloyd.inertia == pytest.approx(ours.inertia, rel=1e-4)
    assert lloyd.labels.dtype == torch.int64 and lloyd.centroids.dtype == torch.float32


@pytest.mark.parametrize("correction", [0, 1])
def test_mean_variance_matches_torch_var(correction: int) -> None:
    x = mixture(n=500) + 100.0
    expected = float(x.double().var(dim=0, correction=correction).mean())
    assert clusterers._mean_variance(x, correction) == pytest.approx(expected, rel=1e-5)


def test_kmeans_plusplus_distances_are_n_by_m() -> None:
    """The seeding reads distances as N×M (samples × candidates) for both metrics."""
    x = mixture(n=50, dim=4)
    rows = x[:3]
    euclid = clusterers._squared_euclidean_to(x, x.pow(2).sum(dim=1))(rows)
    assert torch.allclose(euclid, torch.cdist(x, rows).pow(2), atol=1e-3)
    unit_x = torch.nn.functional.normalize(x, dim=1)
    cosine = clusterers._cosine_to(unit_x)(unit_x[:3])
    assert torch.allclose(cosine, (1.0 - unit_x @ unit_x[:3].T).clamp(min=0.0))


def test_clusterers_satisfy_protocol_and_validate() -> None:
    assert isinstance(KMeans(4), Clusterer) and isinstance(SphericalKMeans(4), Clusterer)
    with pytest.raises(ComponentError, match="did you mean 'faiss'"):
        KMeans(4, backend="fais")
    with pytest.raises(ComponentError, match="did you mean 'bf16'"):
        KMeans(4, assign_precision="bf61")  # type: ignore[arg-type]
    with pytest.raises(ComponentError, match="seed_sample"):
        KMeans(4, seed_sample=0)
    with pytest.raises(ComponentError, match="n_clusters"):
        SphericalKMeans(0)
    with pytest.raises(ValueError, match="samples"):
        KMeans(5, backend="torch").fit(torch.randn(3, 2))
    assert isinstance(SphericalKMeans(2, n_init=1).fit(torch.randn(10, 3)), ClusterResult)


@pytest.fixture(scope="module")
def overlapping_blobs() -> tuple[torch.Tensor, SklearnKMeans]:
    """8,000 rows of 50 overlapping 16-d blobs and scikit-learn's 20-iteration k-means."""
    x = mixture(n=8000, dim=16, k=50, spread=0.5)
    return x, SklearnKMeans(50, n_init=1, max_iter=20, tol=0.0, random_state=0).fit(x.numpy())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_kmeans_seeded_on_a_subsample_within_half_percent_of_sklearn(
    precision: str, overlapping_blobs: tuple[torch.Tensor, SklearnKMeans]
) -> None:
    """The large-N path (seeding on ``seed_sample`` rows, grouped GEMM assignment, fp32 or bf16)
    against scikit-learn's k-means++ and Lloyd at equal iterations."""
    x, reference = overlapping_blobs
    ours = KMeans(
        50,
        n_init=1,
        max_iter=20,
        tol=0.0,
        backend="torch",
        seed_sample=2000,
        assign_precision=precision,  # type: ignore[arg-type]
    ).fit(x)
    assert ours.n_iter == reference.n_iter_ == 20
    assert ours.inertia / reference.inertia_ == pytest.approx(1.0, abs=0.005)


def seeding_rows(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Records the rows each k-means++ call seeds on."""
    seen: list[torch.Tensor] = []
    original = clusterers._kmeans_plusplus

    def recording(x: torch.Tensor, *args: object) -> torch.Tensor:
        seen.append(x)
        return original(x, *args)

    monkeypatch.setattr(clusterers, "_kmeans_plusplus", recording)
    return seen


def test_seeding_runs_on_seed_sample_rows_when_there_are_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = mixture(n=1000)
    seen = seeding_rows(monkeypatch)
    KMeans(8, n_init=2, backend="torch", seed_sample=250).fit(x)
    assert [len(rows) for rows in seen] == [250, 250]
    for rows in seen:
        matches = (rows.unsqueeze(1) == x.unsqueeze(0)).all(dim=2)
        assert matches.any(dim=1).all()  # every seeding row is a row of x ...
        assert not torch.equal(rows, x[:250])  # ... drawn from all of x, not its head
    assert not torch.equal(seen[0], seen[1])  # each restart draws its own sample


def test_seeding_uses_every_row_up_to_seed_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """N <= seed_sample keeps the full-set seeding (and its random stream): same centres."""
    x = mixture(n=400)
    seen = seeding_rows(monkeypatch)
    at_limit = KMeans(8, backend="torch", seed_sample=400).fit(x)
    default = KMeans(8, backend="torch").fit(x)
    assert all(torch.equal(rows, x) for rows in seen)
    assert torch.equal(at_limit.centroids, default.centroids)
    direct = clusterers._kmeans_plusplus(
        x,
        8,
        torch.Generator().manual_seed(0),
        clusterers._squared_euclidean_to(x, x.pow(2).sum(dim=1)),
    )
    assert torch.equal(KMeans(8, n_init=1, max_iter=1)._seeding(x, x.pow(2).sum(dim=1), 0), direct)


@pytest.mark.parametrize("shape", [(7, 1, 5), (64, 3, 32), (300, 32, 32)])
def test_grouped_min_is_the_flat_min(shape: tuple[int, int, int]) -> None:
    generator = torch.Generator().manual_seed(0)
    grouped = torch.randn(shape, generator=generator)
    grouped[:, -1, -1] = math.inf  # a padding centre
    low, arg = clusterers._grouped_min(grouped)
    flat_low, flat_arg = grouped.flatten(1).min(dim=1)
    assert torch.equal(low, flat_low) and torch.equal(arg, flat_arg)


@pytest.mark.parametrize("n_clusters", [5, 32, 70, 1000])
def test_assignment_finds_the_nearest_centre(n_clusters: int) -> None:
    """Labels match a float64 brute force wherever the two nearest centres are not near-tied;
    distances are the fp32 squared distances to the label's centre."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 24, generator=generator)
    centroids = torch.randn(n_clusters, 24, generator=generator)
    x_sq = x.pow(2).sum(dim=1)
    labels, mins = clusterers._assign_euclidean(x, x_sq, centroids, x)
    exact = torch.cdist(x.double(), centroids.double()).pow(2)
    two = exact.topk(min(2, n_clusters), dim=1, largest=False).values
    clear = (two[:, -1] - two[:, 0] > 1e-3) if n_clusters > 1 else torch.ones(3000, dtype=bool)
    assert clear.float().mean() > 0.95
    assert torch.equal(labels[clear], exact.argmin(dim=1)[clear])
    chosen = exact.gather(1, labels.unsqueeze(1)).squeeze(1)
    assert torch.allclose(mins.double(), chosen, rtol=1e-4, atol=1e-3)


def test_bf16_assignment_reports_exact_fp32_distances() -> None:
    """bf16 only picks the labels; their distances, the centroid update and the inertia are
    fp32 (the GEMM's bf16 output alone would be off by ~1e-3 relative)."""
    x = mixture(n=2000, dim=32, k=50, spread=0.5)
    x_sq = x.pow(2).sum(dim=1)
    centroids = x[:50].clone()
    exact_labels, _ = clusterers._assign_euclidean(x, x_sq, centroids, x)
    labels, mins = clusterers._assign_euclidean(x, x_sq, centroids, x.bfloat16())
    assert (labels == exact_labels).float().mean() > 0.98
    assert torch.equal(mins, (x - centroids[labels]).pow(2).sum(dim=1))
    result = KMeans(
        50, n_init=1, max_iter=5, tol=0.0, backend="torch", assign_precision="bf16"
    ).fit(x)
    recomputed = (x.double() - result.centroids.double()[result.labels]).pow(2).sum()
    assert result.inertia == pytest.approx(float(recomputed), rel=1e-6)


def test_bf16_centroids_are_fp32_means_of_their_members() -> None:
    x, _ = blobs()
    result = KMeans(3, n_init=1, backend="torch", assign_precision="bf16").fit(x)
    assert result.n_iter < 100  # converged: the centroids are the means of the final labels
    for c in range(3):
        mean = x[result.labels == c].double().mean(dim=0)
        assert torch.allclose(result.centroids[c].double(), mean, rtol=1e-6, atol=1e-6)


def test_scores_match_addmm() -> None:
    generator = torch.Generator().manual_seed(0)
    rows, weight, bias = (
        torch.randn(*s, generator=generator) for s in ((100, 16), (40, 16), (40,))
    )
    expected = torch.addmm(bias, rows, weight.T)
    assert torch.allclose(clusterers.centre_scores(rows, weight, bias), expected, atol=1e-5)
