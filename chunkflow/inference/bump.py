"""Bump weights for blending overlapping output patches.

Both bumps are 1 at the patch centre and fall towards the faces; the engine divides by the sum
of the weights of all patches covering a voxel, so overlapping weights always sum to 1.

- ``wu``: exp(-1/(1-t²)) per axis with t in (-1, 1), the classic C∞ bump function, rescaled
  linearly to [1e-6, 1] (the original chunkflow maps it to [1, 1e6]).
- ``zung``: exp(-(u(1-u))^-1.5) per axis with u in (0, 1), normalised to 1 at the centre; much
  flatter in the middle and steeper at the faces. Values below 1e-6 are raised to 1e-6.

The floor keeps every weight positive, so a voxel covered by a single patch (at chunk borders)
is still normalised exactly.
"""

from __future__ import annotations

import numpy as np

FLOOR = 1e-6
BUMPS = ("wu", "zung")


def _axis(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.float64) + 1.0) / (n + 1.0)


def bump(size, kind: str = "wu") -> np.ndarray:
    """A float32 bump of shape `size` (z, y, x) with maximum 1 and minimum >= 1e-6."""
    if kind not in BUMPS:
        raise ValueError(f"bump must be one of {BUMPS}, not {kind!r}")
    logit = np.zeros(tuple(size), dtype=np.float64)
    for axis, n in enumerate(size):
        u = _axis(n)
        if kind == "wu":
            t = u * 2.0 - 1.0
            term = -1.0 / (1.0 - t * t)
        else:
            term = -((u * (1.0 - u)) ** -1.5)
        shape = [1, 1, 1]
        shape[axis] = n
        logit = logit + term.reshape(shape)
    weight = np.exp(logit - logit.max())
    if kind == "wu":
        low = weight.min()
        weight = FLOOR + (1.0 - FLOOR) * (weight - low) / (1.0 - low) if low < 1 else weight
    return np.maximum(weight, FLOOR).astype(np.float32)
