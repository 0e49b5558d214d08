"""Small 3D U-Net that predicts nearest-neighbour affinities from EM images.

A chunkflow PyTorch model file: it defines `InstantiatedModel` (the network, fixed
hyper-parameters) plus `pre_process` and `post_process`. chunkflow runs

    post_process(InstantiatedModel(pre_process(x)))

on x of shape (batch, 1, Z, Y, X), float32 in [0, 1] (uint8 image / 255), and gets
(batch, 3, Z, Y, X) affinities in [0, 1], channels (z, y, x): channel c at voxel p is the
probability that p and p - e_c belong to the same neuron.

Architecture: three resolution levels (full, /2, /4) joined by two (2, 2, 2) max-poolings,
two 3x3x3 convolutions + batch norm + ReLU per level, widths 12-24-48, transposed-convolution
up-sampling and skip connections by concatenation; zero padding keeps the spatial size.
Constraint: every patch dimension (Z, Y, X) must be divisible by 4 (= 2 * 2, the total
pooling factor), e.g. 16x64x64 or 20x96x96.
"""

import torch
from torch import nn

#: Intensity mean and standard deviation of the training volume (in [0, 1] units).
IMAGE_MEAN = 0.58
IMAGE_STD = 0.22
#: Total down-sampling factor per axis; patch dimensions must be multiples of it.
POOLING_FACTOR = 4


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3x3 convolutions, each followed by batch norm and ReLU."""
    layers = []
    for channels in (in_channels, out_channels):
        layers += [
            nn.Conv3d(channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class UNet3D(nn.Module):
    """U-Net with `len(widths)` levels and (2, 2, 2) pooling between them."""

    def __init__(self, in_channels: int = 1, out_channels: int = 3, widths=(12, 24, 48)):
        super().__init__()
        self.down = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.down.append(_block(channels, width))
            channels = width
        self.pool = nn.MaxPool3d(2)
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsample.append(nn.ConvTranspose3d(channels, width, 2, stride=2))
            self.up.append(_block(2 * width, width))
            channels = width
        self.head = nn.Conv3d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return affinity logits of the same spatial size as `x`."""
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips[:-1])):
            x = block(torch.cat([upsample(x), skip], dim=1))
        return self.head(x)


def pre_process(input_patch: torch.Tensor) -> torch.Tensor:
    """Standardize an image in [0, 1] with the training-volume statistics."""
    return (input_patch - IMAGE_MEAN) / IMAGE_STD


def post_process(net_output: torch.Tensor) -> torch.Tensor:
    """Turn logits into affinities in [0, 1]."""
    return torch.sigmoid(net_output)


InstantiatedModel = UNet3D()
