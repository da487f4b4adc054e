"""CIFAR-style ResNet (3x3 stem, no max-pool), one definition for every variant."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.datasets import DatasetSpec
from models.layers import LayerFactory, Normalize
from models.registry import register_model


class BasicBlock(nn.Module):
    """conv-BN-(FiLM)-ReLU-conv-BN-(FiLM) + shortcut, ReLU. The shortcut BN gets no FiLM (OAT reference)."""

    def __init__(self, layers: LayerFactory, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = layers.conv(in_planes, planes, 3, stride)
        self.bn1 = layers.norm(planes)
        self.film1 = layers.film(planes)
        self.conv2 = layers.conv(planes, planes, 3, 1)
        self.bn2 = layers.norm(planes)
        self.film2 = layers.film(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(layers.conv(in_planes, planes, 1, stride), layers.norm(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.film1(self.bn1(self.conv1(x))))
        out = self.film2(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv3x3(C_in->64)-BN-(FiLM)-ReLU, four stages of BasicBlocks (64-128-256-512), avg pool, Linear."""

    def __init__(self, layers: LayerFactory, data: DatasetSpec, blocks: tuple[int, ...],
                 widths: tuple[int, ...] = (64, 128, 256, 512), dropout: float = 0.0) -> None:
        super().__init__()
        self.normalize = Normalize(data.mean, data.std)
        self.conv1 = layers.conv(data.in_channels, widths[0], 3, 1, prunable=False)
        self.bn1 = layers.norm(widths[0])
        self.film1 = layers.film(widths[0])
        stages, in_planes = [], widths[0]
        for i, (n, planes) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(n):
                stage.append(BasicBlock(layers, in_planes, planes, stride if j == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = layers.linear(widths[-1], data.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.film1(self.bn1(self.conv1(self.normalize(x)))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(self.dropout(out))


@register_model
def resnet18(layers: LayerFactory, data: DatasetSpec, dropout: float = 0.0) -> nn.Module:
    return ResNet(layers, data, blocks=(2, 2, 2, 2), dropout=dropout)


@register_model
def resnet34(layers: LayerFactory, data: DatasetSpec, dropout: float = 0.0) -> nn.Module:
    return ResNet(layers, data, blocks=(3, 4, 6, 3), dropout=dropout)
