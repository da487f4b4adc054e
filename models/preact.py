"""Pre-activation residual networks: PreAct-ResNet18 and the wide ResNets, one definition.

Block (Zagoruyko & Komodakis WRN code): BN1-(FiLM)-ReLU, conv1, BN2-(FiLM)-ReLU, (dropout), conv2, plus
the identity or, when the shape changes, a bias-free 1x1 conv without BN applied to ``relu(bn1(x))``.
The network ends in BN-ReLU (no FiLM there), global average pool and a Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.datasets import DatasetSpec
from models.layers import LayerFactory, Normalize
from models.registry import register_model


class PreActBlock(nn.Module):
    def __init__(self, layers: LayerFactory, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = layers.norm(in_planes)
        self.film1 = layers.film(in_planes)
        self.conv1 = layers.conv(in_planes, planes, 3, stride)
        self.bn2 = layers.norm(planes)
        self.film2 = layers.film(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = layers.conv(planes, planes, 3, 1)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = layers.conv(in_planes, planes, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.film1(self.bn1(x)))
        residual = x if self.shortcut is None else self.shortcut(pre)
        out = F.relu(self.film2(self.bn2(self.conv1(pre))))
        return self.conv2(self.dropout(out)) + residual


class PreActNet(nn.Module):
    """Stem conv3x3(C_in->stem), stages of PreActBlocks, final BN-ReLU, global average pool, Linear."""

    def __init__(self, layers: LayerFactory, data: DatasetSpec, stem: int, widths: tuple[int, ...],
                 blocks: tuple[int, ...], strides: tuple[int, ...], dropout: float = 0.0) -> None:
        super().__init__()
        self.normalize = Normalize(data.mean, data.std)
        self.conv1 = layers.conv(data.in_channels, stem, 3, 1, prunable=False)
        stages, in_planes = [], stem
        for n, planes, stride in zip(blocks, widths, strides):
            stage = []
            for j in range(n):
                stage.append(PreActBlock(layers, in_planes, planes, stride if j == 0 else 1, dropout))
                in_planes = planes
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.bn = layers.norm(in_planes)
        self.linear = layers.linear(in_planes, data.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.conv1(self.normalize(x)))
        out = F.relu(self.bn(out))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def wide_resnet(layers: LayerFactory, data: DatasetSpec, depth: int, k: int, dropout: float) -> PreActNet:
    """WRN-depth-k: ``(depth - 4) / 6`` blocks per stage, widths 16k, 32k, 64k, strides 1, 2, 2."""
    n = (depth - 4) // 6
    return PreActNet(layers, data, stem=16, widths=(16 * k, 32 * k, 64 * k), blocks=(n, n, n),
                     strides=(1, 2, 2), dropout=dropout)


@register_model
def preact_resnet18(layers: LayerFactory, data: DatasetSpec, dropout: float = 0.0) -> nn.Module:
    return PreActNet(layers, data, stem=64, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2),
                     strides=(1, 2, 2, 2), dropout=dropout)


@register_model
def wrn16_8(layers: LayerFactory, data: DatasetSpec, dropout: float = 0.0) -> nn.Module:
    return wide_resnet(layers, data, depth=16, k=8, dropout=dropout)


@register_model
def wrn28_10(layers: LayerFactory, data: DatasetSpec, dropout: float = 0.0) -> nn.Module:
    return wide_resnet(layers, data, depth=28, k=10, dropout=dropout)


@register_model
def wrn34_10(layers: LayerFactory, data: DatasetSpec, dropout: float = 0.0) -> nn.Module:
    return wide_resnet(layers, data, depth=34, k=10, dropout=dropout)


@register_model
def wrn40_2(layers: LayerFactory, data: DatasetSpec, dropout: float = 0.0) -> nn.Module:
    return wide_resnet(layers, data, depth=40, k=2, dropout=dropout)
