from types import SimpleNamespace

import pytest
import torch

from corekit.components import samplers
from corekit.needs import Need
from corekit.plugins import load_plugins


def seeded(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pseudo(labels: list[int], n_clusters: int) -> dict[str, SimpleNamespace]:
    """``states`` with a stand-in for the E-step's ``PseudoLabels`` (labels, n_clusters)."""
    return {"pseudo": SimpleNamespace(labels=torch.tensor(labels), n_clusters=n_clusters)}


def test_shuffle_is_randperm_bit_for_bit():
    got = samplers.Shuffle().order(50, 40, seeded(), {})
    assert got.dtype == torch.int64 and got.shape == (40,)
    assert torch.equal(got, torch.randperm(50, generator=seeded())[:40])
    assert torch.equal(samplers.Shuffle().order(50, 50, seeded(), {}),
                       torch.randperm(50, generator=seeded()))


def test_shuffle_beyond_n_appends_permutations():
    got = samplers.Shuffle().order(10, 25, seeded(), {})
    assert got.shape == (25,)
    assert torch.equal(got[:10], torch.randperm(10, generator=seeded()))
    assert sorted(got[10:20].tolist()) == list(range(10))
    assert not torch.equal(got[:10], got[10:20])


def test_cluster_balanced_reproduces_the_multinomial_draw():
    labels = [0, 0, 0, 1, 2, 2, 0, 1]
    got = samplers.ClusterBalanced().order(8, 12, seeded(), pseudo(labels, 4))
    counts = torch.tensor([4.0, 2.0, 2.0, 0.0])  # cluster 3 is empty
    weights = 8 / counts[torch.tensor(labels)]
    assert got.dtype == torch.int64 and got.shape == (12,)
    assert torch.equal(got, torch.multinomial(weights, 12, replacement=True, generator=seeded()))


def test_cluster_balanced_favours_small_clusters():
    labels = [0] * 90 + [1] * 10  # 90 % of the images in cluster 0
    got = samplers.ClusterBalanced().order(100, 20_000, seeded(0), pseudo(labels, 2))
    small = (got >= 90).float().mean().item()
    assert 0.48 < small < 0.52  # each cluster drawn half the time, not 10 %
    assert torch.bincount(got[got >= 90], minlength=100)[90:].min() > 0


def test_cluster_balanced_needs_labels_and_refuses_unclustered():
    sampler = samplers.ClusterBalanced()
    assert sampler.needs() == [Need.labels()]
    with pytest.raises(ValueError, match="no cluster yet"):
        sampler.order(4, 4, seeded(), pseudo([0, -1, 1, 1], 2))
    with pytest.raises(ValueError, match="3 pseudo-labels for 4 images"):
        sampler.order(4, 4, seeded(), pseudo([0, 1, 1], 2))


@pytest.mark.parametrize("name, cls", [
    ("shuffle", samplers.Shuffle), ("cluster_balanced", samplers.ClusterBalanced),
])
def test_registered_and_satisfy_protocol(name, cls):
    registry = load_plugins().registry
    assert registry.get("sampler", name).obj is cls
    built = registry.build("sampler", name)
    assert isinstance(built, samplers.Sampler)
    assert built.order(6, 6, seeded(), pseudo([0, 0, 1, 1, 2, 2], 3)).shape == (6,)
