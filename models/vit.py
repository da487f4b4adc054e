"""A tiny pre-norm vision transformer that trains on a CPU, built from the same factories so every variant applies.

Patch size 4: a 32 x 32 input is 8 x 8 = 64 patches, MNIST's 28 x 28 is 7 x 7 = 49 (the positional embedding
is sized for the dataset's input, one row per patch plus the class token; an input whose side is not a
multiple of 4 is refused). Under the variants (SPEC 4.2): the patch conv and every token linear but the
head are noise-conditioned (float*) and masked except the patch conv (floats-*); a FiLM over the 64 features
follows every LayerNorm (oat*); slimming keeps the first round(w 64) features of the residual stream and the
first round(w 4) whole heads, and the class token and positional embedding follow the features.
"""

from __future__ import annotations

import torch
from torch import nn

from hwsim.errors import HwsimError
from models.datasets import DatasetSpec
from models.layers import LayerFactory, Normalize
from models.registry import register_model

PATCH, DIM, DEPTH, HEADS, MLP_DIM = 4, 64, 3, 4, 128  # nanoGPT-sized choices: one CPU minute per MNIST epoch


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(FiLM(LN(x)))``, then ``x + fc2(GELU(fc1(FiLM(LN(x)))))``."""

    def __init__(self, layers: LayerFactory, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.film1 = layers.layer_norm(dim), layers.film(dim, channel_dim=-1)
        self.attn = layers.attention(dim, heads)
        self.norm2, self.film2 = layers.layer_norm(dim), layers.film(dim, channel_dim=-1)
        self.mlp = nn.Sequential(layers.dense(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 layers.dense(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.film1(self.norm1(x)), need_weights=False)[0]
        return x + self.mlp(self.film2(self.norm2(x)))


class ViT(nn.Module):
    """Patch-4 conv embedding, class token, learned positional embedding, ``depth`` pre-norm blocks, final
    LayerNorm (+ FiLM), linear head on the class token."""

    def __init__(self, layers: LayerFactory, data: DatasetSpec, *, dim: int = DIM, depth: int = DEPTH,
                 heads: int = HEADS, mlp_dim: int = MLP_DIM, patch: int = PATCH, dropout: float = 0.0) -> None:
        super().__init__()
        if data.input_size % patch:
            raise HwsimError(f"vit_tiny cuts {patch} x {patch} patches: its input side must be a multiple of {patch}, "
                             f"got {data.input_size}")
        self.normalize = Normalize(data.mean, data.std)
        self.patch = layers.conv(data.in_channels, dim, patch, patch, prunable=False, padding=0)
        tokens = (data.input_size // patch) ** 2 + 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(layers, dim, heads, mlp_dim, dropout) for _ in range(depth)))
        self.norm, self.film = layers.layer_norm(dim), layers.film(dim, channel_dim=-1)
        self.linear = layers.linear(dim, data.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(self.normalize(x)).flatten(2).transpose(1, 2)
        c = x.shape[-1]  # the active width: the class token and positional embedding follow the features
        x = torch.cat([self.cls_token[..., :c].expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed[..., :c]
        x = self.film(self.norm(self.blocks(x)))
        return self.linear(x[:, 0])


@register_model
def vit_tiny(layers: LayerFactory, data: DatasetSpec, dropout: float = 0.0) -> nn.Module:
    """Tiny pre-norm ViT: patch 4, dim 64, 3 blocks of 4 heads, MLP 128 (trains on a CPU in minutes)."""
    return ViT(layers, data, dropout=dropout)
