"""Fixtures shared by the core's tests of pretrained weights: a fake torchvision file and an
offline torch hub folder of the test's own."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

MOBILENET = "mobilenet_v2-b0353104.pth"
"""The name of torchvision's own MobileNetV2 ImageNet file."""


@pytest.fixture(scope="module")
def fake_mobilenet(tmp_path_factory) -> Path:
    """torchvision's MobileNetV2 state dict (random weights) under the real file's name."""
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / MOBILENET
    torch.save(mobilenet_v2().state_dict(), path)
    return path


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache of this test's own, and no download: a network call fails as
    offline. Returns the checkpoints folder (not created)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    return tmp_path / "torch" / "hub" / "checkpoints"
