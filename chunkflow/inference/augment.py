"""Test-time augmentation: run the model on flipped/transposed patches, undo, average.

The transforms are the 8 flip combinations of (z, y, x), each with and without swapping y and x
(only when the patch is square in y, x): 16 passes. For affinity outputs the inverse also fixes
the channels: affinity channel c of voxel p links p and p - e_c (channel order z, y, x), so after
undoing a flip along axis a, channel a moves by one voxel along a, and undoing the y/x swap swaps
channels 1 and 2.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

SPATIAL = (2, 3, 4)  # z, y, x axes of a (batch, channel, z, y, x) tensor


@dataclass(frozen=True)
class Transform:
    flips: tuple  # spatial axes (2, 3 or 4) to flip
    swap_yx: bool

    def forward(self, x):
        if self.flips:
            x = x.flip(self.flips)
        return x.transpose(3, 4) if self.swap_yx else x

    def inverse(self, y, affinity: bool = False):
        if self.swap_yx:
            y = y.transpose(3, 4)
            if affinity:
                y = y[:, [0, 2, 1]]
        if self.flips:
            y = y.flip(self.flips)
            if affinity:
                y = y.clone()
                for axis in self.flips:
                    channel = axis - 2
                    shifted = y[:, channel].narrow(axis - 1, 0, y.shape[axis] - 1).clone()
                    y[:, channel].narrow(axis - 1, 1, y.shape[axis] - 1).copy_(shifted)
        return y


def transforms(square_yx: bool) -> list[Transform]:
    flip_sets = [
        tuple(axis for axis, on in zip(SPATIAL, bits) if on)
        for bits in itertools.product((False, True), repeat=3)
    ]
    swaps = (False, True) if square_yx else (False,)
    return [Transform(flips, swap) for swap in swaps for flips in flip_sets]


def augmented(model, batch, affinity: bool = False):
    """Average of `model` over all transforms of `batch`, each mapped back."""
    square = batch.shape[3] == batch.shape[4]
    total = None
    items = transforms(square)
    for transform in items:
        out = transform.inverse(model(transform.forward(batch).contiguous()), affinity)
        total = out.float() if total is None else total + out
    return total / len(items)
