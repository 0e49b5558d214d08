"""A synthetic training sample that a tiny network can learn: bright cells, dark borders."""

from __future__ import annotations

import numpy as np

from chunkflow.chunk import Chunk, LayerType

TINY_MODEL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, out_channels=3):
        super().__init__()
        self.conv1 = nn.Conv3d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv3d(8, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


InstantiatedModel = Net(OUT_CHANNELS)


def post_process(y):
    return torch.sigmoid(y)
"""


def write_tiny_model(path, out_channels: int = 3):
    """A chunkflow model file: two 3x3x3 convolutions, sigmoid output."""
    path.write_text(TINY_MODEL.replace("OUT_CHANNELS", str(out_channels)))
    return path


def cpu_options(**values):
    """`TrainOptions` of a small, quiet run on one CPU thread: batches of 2 made in-process, no
    profile table; `values` give the model, the checkpoint folder and the rest."""
    from chunkflow.training.trainer import TrainOptions

    return TrainOptions(
        **{
            "batch_size": 2,
            "num_workers": 0,
            "profile_interval": 0,
            "threads": 1,
            "device": "cpu",
            **values,
        }
    )


def cells(shape=(12, 40, 40), offset=(0, 0, 0), seed=0) -> dict[str, Chunk]:
    """Labels: boxes of 4x8x8 voxels (ids > 0) separated by one-voxel borders (id 0) in y and
    x; image: bright noisy cells, dark borders (uint8)."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    labels = (z // 4 * 10000 + y // 8 * 100 + x // 8 + 1).astype(np.uint32)
    labels[(y % 8 == 0) | (x % 8 == 0)] = 0
    rng = np.random.default_rng(seed)
    image = np.where(labels > 0, 180, 60) + rng.normal(0, 10, shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return {
        "image": Chunk(image, offset, (1, 1, 1), LayerType.IMAGE),
        "label": Chunk(labels, offset, (1, 1, 1), LayerType.SEGMENTATION),
    }
