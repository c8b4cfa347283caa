"""Backbone factories: ``factory(in_channels, **options) -> nn.Module`` mapping B×C×H×W to B×D.

Every returned module carries an integer ``out_dim`` (= D). All weights start from scratch;
no pretrained weights are ever fetched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn
from torchvision.models import ResNet
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models import resnet34 as tv_resnet34

from corekit.errors import did_you_mean

_RESNET_DIM = 512


def _headless(model: ResNet, out_dim: int) -> ResNet:
    """Drop the classifier so the forward pass ends at the pooled, flattened features."""
    model.fc = nn.Identity()
    model.out_dim = out_dim
    return model


def _imagenet_resnet(build: Callable[[], ResNet], in_channels: int) -> ResNet:
    """ImageNet ResNet (7×7/2 stem + 3×3/2 max-pool) without fc; a non-RGB stem is re-created
    with torchvision's constructor init (Kaiming-normal, fan_out), spec cc §2.1."""
    model = build()
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return _headless(model, _RESNET_DIM)


def _cifar_resnet(build: Callable[[], ResNet], in_channels: int) -> ResNet:
    """ResNet with the CIFAR stem: 3×3 stride-1 conv (no bias) and no max-pool (spec hadis §2.1).

    The replacement stem keeps PyTorch's default conv init because ProPos creates it after the
    torchvision init loop; every other layer keeps torchvision's init."""
    model = build()
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return _headless(model, _RESNET_DIM)


def resnet18(in_channels: int = 3) -> nn.Module:
    """ImageNet-style ResNet-18 without fc, 11,176,512 parameters for RGB (spec cc §2.1, §9.15)."""
    return _imagenet_resnet(tv_resnet18, in_channels)


def resnet34(in_channels: int = 3) -> nn.Module:
    """ImageNet-style ResNet-34 without fc: CC's backbone, 21,284,672 parameters for RGB
    (spec cc §2.1, §9.14-9.15; SPICE ``resnet34`` for ImageNet-10/-Dog, spec spice §2.1)."""
    return _imagenet_resnet(tv_resnet34, in_channels)


def resnet18_cifar(in_channels: int = 3) -> nn.Module:
    """ProPos "BigResNet-18" (= SPICE ``resnet18_cifar``): torchvision ResNet-18 with the CIFAR
    stem, no fc; 11,168,832 parameters for RGB, B×512 for any input size (spec hadis §2.1, C12)."""
    return _cifar_resnet(tv_resnet18, in_channels)


def resnet34_cifar(in_channels: int = 3) -> nn.Module:
    """torchvision ResNet-34 with the CIFAR stem of spec hadis §2.1, no fc; 21,276,992
    parameters for RGB."""
    return _cifar_resnet(tv_resnet34, in_channels)


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Four 3×3 conv+BN+ReLU layers (strides 1, 2, 2, 2) and global average pooling.

    A fast toolkit backbone for small grey images (MNIST-sized) and CPU tests; not from a paper.
    Channels are ``width // 2, width, 2 * width, out_dim``; works for any input ≥ 8×8."""

    def __init__(self, in_channels: int = 1, width: int = 64, out_dim: int = 256) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, width // 2, stride=1),
            _conv_bn_relu(width // 2, width, stride=2),
            _conv_bn_relu(width, 2 * width, stride=2),
            _conv_bn_relu(2 * width, out_dim, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def small_cnn(in_channels: int = 1, width: int = 64, out_dim: int = 256) -> nn.Module:
    """A 4-layer CNN for small images (toolkit component, see :class:`SmallCNN`)."""
    return SmallCNN(in_channels, width, out_dim)


class MLP(nn.Module):
    """Flatten, then two Linear+BatchNorm+ReLU layers: a backbone for tiny fixed-size images
    such as the 8×8 scikit-learn digits (toolkit component, not from a paper)."""

    def __init__(
        self, in_channels: int = 1, image_size: int = 8, hidden: int = 512, out_dim: int = 256
    ) -> None:
        super().__init__()
        self.in_shape = (in_channels, image_size, image_size)
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * image_size * image_size, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
            nn.BatchNorm1d(out_dim),
            nn.ReLU(inplace=True),
        )
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"mlp backbone expects B×{'×'.join(map(str, self.in_shape))} "
                f"inputs, got {tuple(x.shape)}; set image_size/in_channels"
            )
        return self.layers(x)


def mlp(
    in_channels: int = 1, image_size: int = 8, hidden: int = 512, out_dim: int = 256
) -> nn.Module:
    """Flatten + MLP backbone for tiny images (toolkit component, see :class:`MLP`)."""
    return MLP(in_channels, image_size, hidden, out_dim)


def timm_backbone(model_name: str, in_channels: int = 3, pretrained: bool = False,
                  **timm_kwargs: Any) -> nn.Module:
    """Any timm architecture as a headless backbone (registered as the ``timm:<name>`` prefix
    family); ``out_dim`` is the model's ``num_features``. ``pretrained = true`` downloads the
    timm weights where the internet is reachable; offline, pass ``weights = "PATH"`` instead.

    Raises ``ValueError`` naming the closest timm names when ``model_name`` is unknown."""
    import timm  # imported here: it costs seconds at start-up and only this factory needs it

    if not timm.is_model(model_name):
        raise ValueError(
            f"unknown timm model {model_name!r}; {did_you_mean(model_name, timm.list_models())}"
        )
    try:
        model = timm.create_model(model_name, pretrained=pretrained, num_classes=0,
                                  in_chans=in_channels, **timm_kwargs)
    except (OSError, RuntimeError, ConnectionError) as exc:
        if not pretrained:
            raise
        raise ValueError(
            f"the pretrained weights of {model_name!r} could not be downloaded ({exc}). "
            "Download them where the internet is reachable (e.g. timm.create_model"
            f"('{model_name}', pretrained=True) and save its state_dict to a .safetensors "
            "file), then set pretrained = false and weights = \"PATH/TO/FILE\""
        ) from None
    model.out_dim = int(model.num_features)
    return model
