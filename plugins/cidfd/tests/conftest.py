"""Shared fixtures of the cidfd tests: the MNIST folder of the checkout (../shared/data/mnist
relative to the repository; tests that need it are skipped without it), the Stripe-MNIST set
built from it, and the cidfd plugin loaded through its entry point (alone)."""

from __future__ import annotations

from pathlib import Path

import pytest
from deepclust_cidfd.data import StripeSet, load_stripe_mnist

from corekit.testing import load_only

REPO = Path(__file__).resolve().parents[3]
MNIST = (REPO / ".." / "shared" / "data" / "mnist").resolve()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST files not found in {MNIST}")
    return MNIST


@pytest.fixture(scope="session")
def stripe_mnist(mnist_dir: Path) -> StripeSet:
    return load_stripe_mnist(mnist_dir)


@pytest.fixture(scope="session")
def plugins():
    return load_only("cidfd")
