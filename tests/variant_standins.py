"""Small stand-ins for the outside models of SPEC 4.2, usable as user models (``tests/variant_standins.py:convnext``).

Each is written as its original writes it, on 3 x 32 x 32 inputs and 10 classes, small enough to trace in
milliseconds:

* ``convnext``: ConvNeXt (Liu et al. 2022; timm's ``convnext.py``): a 4 x 4 stride-4 stem and 2 x 2 stride-2
  downsampling, each with a channels-first ``LayerNorm2d``; blocks of a depthwise 7 x 7 conv, a LayerNorm over
  channels-last features, Linear(C, 4C), GELU, Linear(4C, C) and a layer scale; LayerNorm and a linear head;
* ``vit``: torchvision's ViT encoder block (``nn.MultiheadAttention`` called as ``attn(y, y, y,
  need_weights=False)``), patch 8, class token, positional embedding;
* ``swin``: Swin-like windowed attention: 4 x 4 windows (shifted by 2 in every second block), one
  ``nn.MultiheadAttention`` over the windows as its batch, patch merging (LayerNorm(4C), Linear(4C, 2C));
* ``bnact``: a ResNet-style net with timm's ``BatchNormAct2d`` (a BatchNorm2d subclass that applies its own
  dropout and activation) and a projection shortcut;
* ``squeezenet``: a SqueezeNet-style net (a fire module: squeeze 1 x 1, expand 1 x 1 and 3 x 3, concatenated)
  whose classifier is a 1 x 1 conv followed by ReLU and global average pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLASSES = 10


class LayerNorm2d(nn.LayerNorm):
    """timm's channels-first LayerNorm: normalizes the C of (B, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv_dw(x).permute(0, 2, 3, 1))
        y = self.gamma * self.fc2(self.act(self.fc1(y)))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    dims = (16, 32)

    def __init__(self) -> None:
        super().__init__()
        d1, d2 = self.dims
        self.stem = nn.Sequential(nn.Conv2d(3, d1, 4, 4), LayerNorm2d(d1, eps=1e-6))
        self.stage1 = ConvNeXtBlock(d1)
        self.downsample = nn.Sequential(LayerNorm2d(d1, eps=1e-6), nn.Conv2d(d1, d2, 2, 2))
        self.stage2 = ConvNeXtBlock(d2)
        self.norm = nn.LayerNorm(d2)
        self.head = nn.Linear(d2, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.downsample(self.stage1(self.stem(x))))
        return self.head(self.norm(x.mean(dim=(2, 3))))


class EncoderBlock(nn.Module):
    """torchvision's ``EncoderBlock``: pre-norm, ``nn.MultiheadAttention`` with batch_first, MLP."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class ViT(nn.Module):
    patch, dim, heads, mlp, depth = 8, 32, 4, 64, 2
    tokens = (32 // 8) ** 2 + 1

    def __init__(self) -> None:
        super().__init__()
        self.conv_proj = nn.Conv2d(3, self.dim, self.patch, self.patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, self.dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, self.tokens, self.dim) * 0.02)
        self.layers = nn.Sequential(*(EncoderBlock(self.dim, self.heads, self.mlp) for _ in range(self.depth)))
        self.ln = nn.LayerNorm(self.dim)
        self.head = nn.Linear(self.dim, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        return self.head(self.ln(self.layers(x))[:, 0])


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, b: int, h: int, wd: int) -> torch.Tensor:
    c = x.shape[-1]
    x = x.view(b, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, c)


class SwinBlock(nn.Module):
    window = 4

    def __init__(self, dim: int, heads: int, shift: int) -> None:
        super().__init__()
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, W, C)
        b, h, w, _ = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = _windows(y, self.window)
        y = self.attn(y, y, y, need_weights=False)[0]
        y = _unwindows(y, self.window, b, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class Swin(nn.Module):
    dim = 16

    def __init__(self) -> None:
        super().__init__()
        d = self.dim
        self.patch_embed = nn.Conv2d(3, d, 4, 4)
        self.patch_norm = nn.LayerNorm(d)  # its FiLM and the first block's both belong to patch_embed (F added)
        self.stage1 = nn.Sequential(SwinBlock(d, 2, 0), SwinBlock(d, 2, 2))
        self.merge = PatchMerging(d)
        self.stage2 = SwinBlock(2 * d, 4, 0)
        self.norm = nn.LayerNorm(2 * d)
        self.head = nn.Linear(2 * d, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_norm(self.patch_embed(x).permute(0, 2, 3, 1))
        x = self.stage2(self.merge(self.stage1(x)))
        return self.head(self.norm(x).mean(dim=(1, 2)))


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's ``BatchNormAct2d`` (``timm/layers/norm_act.py``): batch norm, then ``self.drop``, then ``self.act``."""

    def __init__(self, num_features: int, act: bool = True) -> None:
        super().__init__(num_features)
        self.drop = nn.Identity()
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training or not self.track_running_stats, self.momentum, self.eps)
        return self.act(self.drop(x))


class BNActNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1, bias=False), BatchNormAct2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, 2, 1, bias=False), BatchNormAct2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 32, 3, padding=1, bias=False), BatchNormAct2d(32, act=False)
        self.shortcut = nn.Sequential(nn.Conv2d(16, 32, 1, 2, bias=False), BatchNormAct2d(32, act=False))
        self.fc = nn.Linear(32, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        y = self.bn3(self.conv3(self.bn2(self.conv2(x))))
        return self.fc(F.relu(y + self.shortcut(x)).mean(dim=(2, 3)))


class SqueezeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.squeeze = nn.Sequential(nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.expand1, self.expand3 = nn.Conv2d(8, 16, 1), nn.Conv2d(8, 16, 3, padding=1)
        self.expand_bn = nn.BatchNorm2d(32)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(32, CLASSES, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(self.stem(x))
        x = F.relu(self.expand_bn(torch.cat([self.expand1(x), self.expand3(x)], dim=1)))
        return torch.flatten(self.classifier(x), 1)


def convnext() -> nn.Module:
    return ConvNeXt()


def vit() -> nn.Module:
    return ViT()


def swin() -> nn.Module:
    return Swin()


def bnact() -> nn.Module:
    return BNActNet()


def squeezenet() -> nn.Module:
    return SqueezeNet()
