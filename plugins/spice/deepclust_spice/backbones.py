"""SPICE's backbones (arXiv 2103.09382, §IV-B, and the authors' code), each returning pooled
features ``(B, C, H, W) -> (B, D)``.

``clusterresnet34`` is the IIC-style ResNet-34 of stages 1-2 (3×3 stem + 2×2 max-pool, no fc).
The wide ResNets are the stage-3 networks of FixMatch's convention (pre-activation blocks,
LeakyReLU 0.1, BatchNorm momentum 0.001): ``wrn28_2`` (CIFAR-10), ``wrn28_8`` (CIFAR-100-20),
``wrn37_2_stl10`` (STL10: four groups, each of stride 2). Their classifier is a head
(``linear_classifier``), so the backbones stop at the pooled features.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 conv + BN, identity or 1×1 projection shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ClusterResNet(nn.Module):
    """IIC's ResNet (``clusterresnet34``, SPICE's "ResNet34"): conv3×3 s1 (no bias) + BN + ReLU +
    MaxPool(2, 2, pad 1), BasicBlock stages ``blocks`` of widths 64/128/256/512 with strides
    1, 2, 2, 2, global average pool. ``(B, C, 96, 96)`` maps to a 7×7 map, then ``(B, 512)``.
    PyTorch default initialisation (the code never calls its Kaiming helper)."""

    def __init__(self, in_channels: int = 3, blocks: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(2, 2, 1))
        layers, planes = [], 64
        for i, count in enumerate(blocks):
            width = 64 * 2 ** i
            for j in range(count):
                layers.append(BasicBlock(planes, width, 2 if (i > 0 and j == 0) else 1))
                planes = width
        self.layers = nn.Sequential(*layers)
        self.out_dim = planes

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, 512, h, w)`` before pooling."""
        return self.layers(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))


def clusterresnet34(in_channels: int = 3) -> ClusterResNet:
    """``clusterresnet34``: 21,276,992 parameters."""
    return ClusterResNet(in_channels, (3, 4, 6, 3))


class WideBlock(nn.Module):
    """FixMatch's pre-activation wide block: BN → LeakyReLU(0.1) → conv3×3 → BN → LeakyReLU →
    conv3×3, plus a 1×1 conv shortcut when the width changes. ``activate_before_residual``
    feeds the activated input to the shortcut too (the first group)."""

    def __init__(self, in_planes: int, planes: int, stride: int,
                 activate_before_residual: bool = False) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes, momentum=0.001)
        self.relu1 = nn.LeakyReLU(0.1, inplace=True)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=0.001)
        self.relu2 = nn.LeakyReLU(0.1, inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.equal = in_planes == planes
        self.shortcut = None if self.equal else nn.Conv2d(in_planes, planes, 1, stride, 0,
                                                          bias=False)
        self.activate_before_residual = activate_before_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu1(self.bn1(x))
        if self.equal:
            return x + self.conv2(self.relu2(self.bn2(self.conv1(activated))))
        # a widening block reads the activated input only in the first group (FixMatch's
        # convention); elsewhere both its convolution and its shortcut read x as it came
        source = activated if self.activate_before_residual else x
        return self.shortcut(source) + self.conv2(self.relu2(self.bn2(self.conv1(source))))


class WideResNet(nn.Module):
    """Wide ResNet (FixMatch's convention, arXiv 2001.07685): conv3×3 3→16, then one group per
    entry of ``strides`` of ``n`` wide blocks (widths ``16·widen·2^g``), BN + LeakyReLU(0.1), global
    average pool to ``(B, D)``. Conv weights N(0, 2/(k²·C_out)), BN γ = 1, β = 0."""

    def __init__(self, in_channels: int = 3, n: int = 4, widen: int = 2,
                 strides: tuple[int, ...] = (1, 2, 2)) -> None:
        super().__init__()
        widths = [16] + [16 * widen * 2 ** g for g in range(len(strides))]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks = []
        for g, stride in enumerate(strides):
            for j in range(n):
                blocks.append(WideBlock(widths[g] if j == 0 else widths[g + 1], widths[g + 1],
                                        stride if j == 0 else 1,
                                        activate_before_residual=(g == 0 and j == 0)))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(widths[-1], momentum=0.001)
        self.relu = nn.LeakyReLU(0.1, inplace=True)
        self.out_dim = widths[-1]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.blocks(self.conv(x)))).mean(dim=(2, 3))


def wrn28_2(in_channels: int = 3) -> WideResNet:
    """WRN-28-2 (CIFAR-10 stage 3): 3 groups of 4 blocks, widths 32/64/128."""
    return WideResNet(in_channels, n=4, widen=2, strides=(1, 2, 2))


def wrn28_8(in_channels: int = 3) -> WideResNet:
    """WRN-28-8 (CIFAR-100-20 stage 3): 3 groups of 4 blocks, widths 128/256/512."""
    return WideResNet(in_channels, n=4, widen=8, strides=(1, 2, 2))


def wrn37_2_stl10(in_channels: int = 3) -> WideResNet:
    """WRN-37-2 for STL10 (stage 3): 4 groups of 4 blocks, widths 32/64/128/256, every group
    of stride 2 (96 → 6)."""
    return WideResNet(in_channels, n=4, widen=2, strides=(2, 2, 2, 2))
