"""The ``spectral`` clusterer: it follows the neighbour graph where k-means' convex cells cannot
(two half-moons), returns the contract's ClusterResult, and refuses too few images."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import make_moons
from sklearn.metrics import adjusted_rand_score

from corekit.components.clusterers import Clusterer, ClusterResult, KMeans
from corekit.components.spectral import SpectralClustering
from corekit.errors import ComponentError


def moons(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's two interleaved half-moons in the plane z = 3, so that the cosine
    geometry the clusterer sees keeps their shape; labels 0 and 1."""
    points, labels = make_moons(n, noise=0.05, random_state=0)
    lifted = torch.cat([torch.as_tensor(points, dtype=torch.float32),
                        torch.full((n, 1), 3.0)], 1)
    return lifted, torch.as_tensor(labels)


def test_spectral_separates_moons_that_kmeans_cuts_across():
    points, labels = moons()
    spectral = SpectralClustering(2, n_neighbors=10).fit(points)
    kmeans = KMeans(2, n_init=10).fit(torch.nn.functional.normalize(points, dim=1))
    assert adjusted_rand_score(labels, spectral.labels) > 0.99
    assert adjusted_rand_score(labels, kmeans.labels) < 0.5


def test_the_result_fits_the_clusterer_contract():
    points, _ = moons(100)
    clusterer = SpectralClustering(2, n_neighbors=5)
    assert isinstance(clusterer, Clusterer)
    result = clusterer.fit(points)
    assert isinstance(result, ClusterResult)
    assert result.labels.shape == (100,) and result.labels.dtype == torch.long
    assert result.centroids.shape == (2, 3)
    x = torch.nn.functional.normalize(points, dim=1)
    for c in range(2):  # each centroid is the mean of its members' normalised features
        assert torch.allclose(result.centroids[c], x[result.labels == c].mean(0), atol=1e-6)
    cos = (x * torch.nn.functional.normalize(result.centroids, dim=1)[result.labels]).sum(1)
    assert result.inertia == pytest.approx(float((1 - cos).sum()), rel=1e-5)


def test_too_few_images_or_neighbours_are_refused():
    with pytest.raises(ComponentError, match="at least one image more than clusters"):
        SpectralClustering(4).fit(torch.randn(4, 3))
    with pytest.raises(ComponentError, match="n_neighbors must be >= 1"):
        SpectralClustering(2, n_neighbors=0)


def test_a_bad_clusterer_option_names_its_table(capsys):
    from corekit.cli import main

    assert main(["check", "simclr-kmeans", "--data", "digits", "--set",
                 'clusterer.type="spectral"', "--set", "clusterer.n_neighbors=0"]) == 2
    assert "clusterer: cannot build clusterer 'spectral': n_neighbors must be >= 1, got 0" in \
        capsys.readouterr().err


def test_auto_neighbours_are_one_percent_of_the_images_and_at_least_ten():
    from corekit.components.spectral import SpectralClustering, neighbours_for

    assert [neighbours_for("auto", n) for n in (450, 1797, 70000)] == [10, 18, 700]
    assert neighbours_for(7, 1797) == 7
    with pytest.raises(ComponentError, match="an integer >= 1 or 'auto'"):
        SpectralClustering(3, n_neighbors="many")
