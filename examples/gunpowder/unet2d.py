"""A small 2D U-Net as a chunkflow PyTorch model file, for the gunpowder tutorials.

chunkflow's patches are 3D (z, y, x); a 2D image is one section, so the network takes
(batch, 1, 1, y, x), works on (batch, 1, y, x) and gives (batch, 1, 1, y, x) back. Two levels
joined by one (2, 2) max-pooling: y and x must be even. Its weights are seeded, so an untrained
model (the simple tutorial predicts with one) is the same on every run.
"""

import torch
from torch import nn


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class UNet2D(nn.Module):
    def __init__(self, features: int = 8, out_channels: int = 1):
        super().__init__()
        self.down = _block(1, features)
        self.pool = nn.MaxPool2d(2)
        self.bottom = _block(features, 2 * features)
        self.up = nn.ConvTranspose2d(2 * features, features, 2, stride=2)
        self.out = nn.Sequential(
            _block(2 * features, features), nn.Conv2d(features, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.dim() == 5  # (batch, channel, 1, y, x) from chunkflow's 3D patches
        if flat:
            x = x[:, :, 0]
        skip = self.down(x)
        y = self.up(self.bottom(self.pool(skip)))
        y = self.out(torch.cat([skip, y], dim=1))
        return y[:, :, None] if flat else y


def post_process(net_output: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(net_output)


torch.manual_seed(0)
InstantiatedModel = UNet2D()
