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


def mixture(n: int = 1000, dim: int = 16, k: int = 8, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(k, dim, generator=generator)
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
        lambda seed: KMeans(8, backend="sklearn", seed=seed),
        pytest.param(
            lambda seed: KMeans(8, backend="faiss", seed=seed),
            marks=pytest.mark.skipif(not HAS_FAISS, reason="no faiss"),
        ),
        lambda seed: SphericalKMeans(8, n_init=3, seed=seed),
    ],
    ids=["torch", "sklearn", "faiss", "spherical"],
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
    with pytest.raises(ComponentError, match="n_clusters"):
        SphericalKMeans(0)
    with pytest.raises(ValueError, match="samples"):
        KMeans(5, backend="torch").fit(torch.randn(3, 2))
    assert isinstance(SphericalKMeans(2, n_init=1).fit(torch.randn(10, 3)), ClusterResult)
