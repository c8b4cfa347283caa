"""Backbone factories: ``factory(in_channels, **options) -> nn.Module`` mapping B×C×H×W to B×D.

Every returned module carries an integer ``out_dim`` (= D). The core backbones start from
scratch; the ``torchvision:NAME`` and ``timm:NAME`` families take ``pretrained = true`` (weights
on this machine first, ``corekit.components.pretrained``) and carry ``input_mean`` and
``input_std``, the normalisation their pretrained weights expect (``augment.normalize =
"backbone"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn
from torchvision.models import ResNet
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models import resnet34 as tv_resnet34

from corekit.components import pretrained as pretrained_files
from corekit.data.sources import IMAGENET_MEAN, IMAGENET_STD
from corekit.errors import did_you_mean
from corekit.weights import adapt_stem, note

_RESNET_DIM = 512


def _headless(model: ResNet, out_dim: int) -> ResNet:
    """Drop the classifier so the forward pass ends at the pooled, flattened features."""
    model.fc = nn.Identity()
    model.out_dim = out_dim
    return model


def _imagenet_resnet(build: Callable[[], ResNet], in_channels: int) -> ResNet:
    """ImageNet ResNet (7×7/2 stem + 3×3/2 max-pool) without fc; a non-RGB stem is re-created
    with torchvision's constructor init (Kaiming-normal, fan_out)."""
    model = build()
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return _headless(model, _RESNET_DIM)


def _cifar_resnet(build: Callable[[], ResNet], in_channels: int) -> ResNet:
    """ResNet with the CIFAR stem: 3×3 stride-1 conv (no bias) and no max-pool (ProPos, HaDis).

    The replacement stem keeps PyTorch's default conv init because ProPos creates it after the
    torchvision init loop; every other layer keeps torchvision's init."""
    model = build()
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return _headless(model, _RESNET_DIM)


def resnet18(in_channels: int = 3) -> nn.Module:
    """ImageNet-style ResNet-18 without fc, 11,176,512 parameters for RGB."""
    return _imagenet_resnet(tv_resnet18, in_channels)


def resnet34(in_channels: int = 3) -> nn.Module:
    """ImageNet-style ResNet-34 without fc: CC's backbone, 21,284,672 parameters for RGB
    (and SPICE's ``resnet34`` for ImageNet-10/-Dog)."""
    return _imagenet_resnet(tv_resnet34, in_channels)


def resnet18_cifar(in_channels: int = 3) -> nn.Module:
    """ProPos "BigResNet-18" (= SPICE ``resnet18_cifar``): torchvision ResNet-18 with the CIFAR
    stem, no fc; 11,168,832 parameters for RGB, B×512 for any input size."""
    return _cifar_resnet(tv_resnet18, in_channels)


def resnet34_cifar(in_channels: int = 3) -> nn.Module:
    """torchvision ResNet-34 with the CIFAR stem of ProPos, no fc; 21,276,992
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


def _with_stats(model: nn.Module, out_dim: int, mean: Any, std: Any) -> nn.Module:
    model.out_dim = out_dim
    model.input_mean, model.input_std = tuple(map(float, mean)), tuple(map(float, std))
    return model


def _stem_note(family: str, model_name: str) -> None:
    note(f"model.backbone: {family}:{model_name}'s pretrained stem is RGB and the images are "
         "grey; summed its 3 input filters into 1")


def timm_backbone(model_name: str, in_channels: int = 3, pretrained: bool = False,
                  **timm_kwargs: Any) -> nn.Module:
    """Any timm architecture as a headless backbone (registered as the ``timm:<name>`` prefix
    family); ``out_dim`` is the model's ``num_features``. ``pretrained = true`` loads the timm
    weights from the Hugging Face cache or torch hub's checkpoint folder when they are there,
    else downloads them; a grey (1-channel) input gets timm's summed RGB stem.

    Raises ``ValueError`` naming the closest timm names when ``model_name`` is unknown, and
    saying where to put the file when the weights are neither here nor downloadable."""
    import timm  # imported here: it costs seconds at start-up and only this factory needs it

    if not timm.is_model(model_name):
        raise ValueError(
            f"unknown timm model {model_name!r}; {did_you_mean(model_name, timm.list_models())}"
        )
    cfg = timm.models.get_pretrained_cfg(model_name)
    local = pretrained_files.timm_local_file(cfg) if pretrained else None
    if local is not None:
        timm_kwargs = {**timm_kwargs, "pretrained_cfg_overlay": {"file": str(local)}}
    elif pretrained:
        host = pretrained_files.timm_host(cfg)
        if host is not None and not pretrained_files.reachable(host):
            raise pretrained_files.timm_missing(model_name, cfg, OSError(f"{host} is not "
                                                                         "reachable"))
    try:
        model = timm.create_model(model_name, pretrained=pretrained, num_classes=0,
                                  in_chans=in_channels, **timm_kwargs)
    except (OSError, RuntimeError, ConnectionError) as exc:
        if not pretrained:
            raise
        raise pretrained_files.timm_missing(model_name, cfg, exc) from None
    if pretrained and in_channels == 1:
        _stem_note("timm", model_name)
    pcfg = model.pretrained_cfg
    return _with_stats(model, int(model.num_features), pcfg.get("mean", IMAGENET_MEAN),
                       pcfg.get("std", IMAGENET_STD))


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier: the last ``nn.Linear`` in module order."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear classifier to remove; pick "
                         "another torchvision model")
    return linears[-1]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    return next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


def _grey_stem(model: nn.Module, in_channels: int, pretrained: bool, model_name: str) -> None:
    """The first conv for ``in_channels`` inputs: the pretrained RGB filters summed for grey
    images (``adapt_stem``), a freshly initialised conv without pretrained weights."""
    name, conv = _first_conv(model)
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, conv.bias is not None)
    if pretrained:
        new.weight.data.copy_(adapt_stem(conv.weight.data, in_channels, "model.backbone"))
        if conv.bias is not None:
            new.bias.data.copy_(conv.bias.data)
        _stem_note("torchvision", model_name)
    _replace(model, name, new)


def torchvision_backbone(model_name: str, in_channels: int = 3,
                         pretrained: bool = False) -> nn.Module:
    """A torchvision classification model (registered as the ``torchvision:<name>`` prefix
    family: every builder of ``torchvision.models.list_models``) without its classifier: B×D
    for D the input width of its last ``nn.Linear`` (the pooled penultimate output).

    ``pretrained = true`` loads its weights from torch hub's checkpoint folder when one of its
    weight files is there (any of its ``Weights`` entries, DEFAULT first), else downloads the
    DEFAULT one; ``input_mean``/``input_std`` are its weights' normalisation. Grey images get
    the summed RGB stem. Raises ``ValueError`` for an unknown name (with the closest ones)."""
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm)
    if model_name not in names:
        raise ValueError(f"unknown torchvision model {model_name!r}; "
                         f"{did_you_mean(model_name, names)}")
    extra = {"aux_logits": False, "init_weights": False} \
        if model_name in ("googlenet", "inception_v3") else {}
    model = tvm.get_model(model_name, weights=None, **extra)
    if pretrained:
        state, _ = pretrained_files.torchvision_state(model_name)
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in state.items() if k in own})
    if in_channels != 3:
        _grey_stem(model, in_channels, pretrained, model_name)
    name, linear = _last_linear(model)
    _replace(model, name, nn.Identity())
    stats = tvm.get_model_weights(model_name).DEFAULT.transforms()
    return _with_stats(model, linear.in_features, stats.mean, stats.std)
