"""Backbone factories: shapes, ``out_dim``, parameter counts (spec cc §9.14-9.15, hadis C12)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from corekit.components import backbones as B


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (B.resnet18, 11_176_512),
        (B.resnet34, 21_284_672),
        (B.resnet18_cifar, 11_168_832),
        (B.resnet34_cifar, 21_276_992),
    ],
)
def test_resnet_parameter_counts(factory, expected):
    model = factory()
    assert n_params(model) == expected
    assert model.out_dim == 512


@pytest.mark.parametrize("side", [32, 96])
def test_resnet18_cifar_shapes(side):
    model = B.resnet18_cifar()
    with torch.no_grad():
        h = model(torch.rand(2, 3, side, side))
    assert h.shape == (2, 512)
    assert isinstance(model.maxpool, nn.Identity)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.conv1.bias is None


def test_resnet34_imagenet_shape():
    """Spec cc §9.14 (at 64 px to stay fast; the 224-px path is the same code): B×512."""
    model = B.resnet34()
    with torch.no_grad():
        h = model(torch.rand(2, 3, 64, 64))
    assert h.shape == (2, model.out_dim) == (2, 512)


def test_resnet_grey_stem():
    cifar = B.resnet18_cifar(in_channels=1)
    imagenet = B.resnet18(in_channels=1)
    assert n_params(cifar) == 11_168_832 - 2 * 576
    assert n_params(imagenet) == 11_176_512 - 2 * 3136
    with torch.no_grad():
        assert cifar(torch.rand(2, 1, 32, 32)).shape == (2, 512)
        assert imagenet(torch.rand(2, 1, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize(("channels", "side"), [(1, 28), (1, 8), (3, 32), (3, 96)])
def test_small_cnn_any_size(channels, side):
    model = B.small_cnn(in_channels=channels, width=16, out_dim=32)
    h = model(torch.rand(2, channels, side, side))
    assert h.shape == (2, model.out_dim) == (2, 32)
    h.sum().backward()


def test_small_cnn_defaults():
    model = B.small_cnn()
    assert model.out_dim == 256
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 256)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4


def test_mlp():
    model = B.mlp()
    h = model(torch.rand(4, 1, 8, 8))
    assert h.shape == (4, model.out_dim) == (4, 256)
    rgb = B.mlp(in_channels=3, image_size=16, hidden=32, out_dim=8)
    assert rgb(torch.rand(2, 3, 16, 16)).shape == (2, 8)
    with pytest.raises(ValueError, match="image_size"):
        model(torch.rand(2, 1, 16, 16))


def test_timm_backbone_tiny():
    model = B.timm_backbone("resnet10t")
    with torch.no_grad():
        h = model(torch.rand(2, 3, 32, 32))
    assert h.shape == (2, model.out_dim) == (2, 512)
    grey = B.timm_backbone("test_resnet", in_channels=1)
    with torch.no_grad():
        assert grey(torch.rand(2, 1, 32, 32)).shape == (2, grey.out_dim)


def test_timm_unknown_name_suggests():
    with pytest.raises(ValueError, match="resnet10t"):
        B.timm_backbone("resnet10x")
