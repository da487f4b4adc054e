"""A user model for hwsim: a small CNN and the zero-argument factory hwsim calls to build it.

Cost it like a zoo model, naming the file and the factory::

    hwsim count examples/my_net.py:build --input-size 3,32,32
    hwsim delay examples/my_net.py:build --input-size 3,32,32 --hw examples/hw_6bit.toml

hwsim traces one forward pass of a batch of 1 at ``--input-size`` (C,H,W), so the factory takes no arguments
and the model takes images of shape (B, C, H, W). Plain torch only: no hwsim imports are needed.
"""

from __future__ import annotations

from torch import nn


class MyNet(nn.Module):
    """Three 3x3 conv blocks (32, 64, 128 channels; the last two halve the resolution), global average pooling
    and a linear classifier."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        widths = (32, 64, 128)
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(widths):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def build() -> nn.Module:
    """The zero-argument factory: ``hwsim count examples/my_net.py:build``."""
    return MyNet()


if __name__ == "__main__":
    import torch

    net = build()
    print(net(torch.rand(2, 3, 32, 32)).shape)  # torch.Size([2, 10])
