"""A small CNN that trains in minutes on a CPU, built from the same factories so every variant applies."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.datasets import DatasetSpec
from models.layers import LayerFactory, Normalize
from models.registry import register_model


class SmallCNN(nn.Module):
    """conv3x3(16)-BN-ReLU, conv3x3(32, s2)-BN-ReLU, conv3x3(64, s2)-BN-ReLU (FiLM after each BN), 4x4 average
    pool, flatten, Linear.

    The classifier sees a 4x4 map rather than a global average: with three convs the receptive field is
    small, and a global pool throws away where the strokes are (on MNIST: 55 % vs 95 % after 3 epochs).
    """

    pool = 4  # side of the pooled map the classifier reads

    def __init__(self, layers: LayerFactory, data: DatasetSpec, widths: tuple[int, ...] = (16, 32, 64),
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.normalize = Normalize(data.mean, data.std)
        body: list[nn.Module] = []
        in_c = data.in_channels
        for i, c in enumerate(widths):
            body += [layers.conv(in_c, c, 3, 1 if i == 0 else 2, prunable=i > 0), layers.norm(c),
                     layers.film(c), nn.ReLU()]
            in_c = c
        self.features = nn.Sequential(*body)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = layers.linear(in_c * self.pool * self.pool, data.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.normalize(x))
        return self.linear(self.dropout(torch.flatten(F.adaptive_avg_pool2d(out, self.pool), 1)))


@register_model
def small_cnn(layers: LayerFactory, data: DatasetSpec, dropout: float = 0.0) -> nn.Module:
    """Small CNN for CPU runs: conv16-conv32/2-conv64/2, 4x4 avg pool, Linear (trains in minutes)."""
    return SmallCNN(layers, data, dropout=dropout)
