"""Intensity augmentations of image chunks, after gunpowder's augment nodes: `normalize`,
`intensity_augment`, `noise_augment` and `defect_augment`.

Every random function takes a `numpy.random.Generator` and never touches global random state.
They work in normalised units: float images are taken to lie in [0, 1]; integer images are
mapped to [0, 1] by their dtype range (`chunkflow.chunk.to_unit`) and back to the same dtype
with rounding (`chunkflow.chunk.from_unit`). The dtype and
layer type never change. Geometric augmentations are in `chunkflow.training.augment`.
"""

from __future__ import annotations

import math

import numpy as np

from chunkflow.chunk import Chunk, from_unit, to_unit
from chunkflow.errors import ChunkflowError

__all__ = ["defect_augment", "intensity_augment", "noise_augment", "normalize"]

NOISE_MODES = ("gaussian", "s&p", "poisson", "speckle")
_NOISE_ALIASES = {"salt-and-pepper": "s&p", "salt_and_pepper": "s&p", "sp": "s&p"}


# ---------------------------------------------------------------------------------------------
# value ranges


def _back(chunk: Chunk, unit: np.ndarray, clip: bool = False) -> Chunk:
    """`unit` back as a chunk like `chunk` (its dtype by `from_unit`, its layer type); integer
    dtypes saturate at their ends, floats are clipped to [0, 1] only with `clip`."""
    clip = clip or chunk.dtype.kind != "f"
    return chunk.with_array(from_unit(unit, chunk.dtype, clip), chunk.layer_type)


def _finite_mean(unit: np.ndarray, axis=None) -> np.ndarray:
    """The mean of the finite values (0 where there are none), over `axis` (keeping its
    dimensions): a NaN voxel stays NaN but does not turn every voxel into NaN."""
    mean = unit.mean(axis=axis, keepdims=axis is not None, dtype=np.float64)
    if np.isfinite(mean).all():
        return mean
    finite = np.isfinite(unit)
    total = np.where(finite, unit, 0).sum(axis=axis, keepdims=axis is not None, dtype=np.float64)
    count = finite.sum(axis=axis, keepdims=axis is not None)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _check_image(chunk: Chunk, what: str) -> None:
    if not chunk.is_image:
        raise ChunkflowError(
            f"{what} works on image chunks, not on a {chunk.layer_type.value} "
            f"({chunk.dtype}, shape {chunk.shape})"
        )


def normalize(chunk: Chunk) -> Chunk:
    """Float32 values in [0, 1] by the dtype range (like gunpowder's Normalize).

    uint8 / 255, uint16 / 65535, signed integers (x - min) / (max - min), bool as 0/1; float
    input is returned as float32 unchanged. Segmentations are refused (ids are no intensities).
    """
    if chunk.is_segmentation and chunk.dtype != np.bool_:
        raise ChunkflowError(
            f"normalize works on images and maps, not on a segmentation ({chunk.dtype})"
        )
    return chunk.with_array(to_unit(np.asarray(chunk)), chunk.layer_type)


def intensity_augment(
    chunk: Chunk,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.9, 1.1),
    shift: tuple[float, float] = (-0.1, 0.1),
    z_section_wise: bool = False,
    clip: bool = True,
) -> Chunk:
    """Scale and shift intensities around their mean: x' = mean + (x - mean) * a + b.

    a ~ U(scale) and b ~ U(shift), in normalised units; with `z_section_wise` every z section
    draws its own a and b and uses its own mean. `clip` clips the result to [0, 1] (integer
    dtypes are always clipped).
    """
    _check_image(chunk, "intensity-augment")
    check_interval(scale, "scale")
    check_interval(shift, "shift")
    unit = to_unit(np.asarray(chunk))
    if z_section_wise:
        sections = unit.shape[-3]
        a = rng.uniform(*scale, sections).astype(np.float32).reshape(sections, 1, 1)
        b = rng.uniform(*shift, sections).astype(np.float32).reshape(sections, 1, 1)
        axes = tuple(ax for ax in range(unit.ndim) if ax != unit.ndim - 3)
        mean = _finite_mean(unit, axes).astype(np.float32).reshape(sections, 1, 1)
    else:
        a, b = (np.float32(rng.uniform(*interval)) for interval in (scale, shift))
        mean = np.float32(_finite_mean(unit))
    unit -= mean
    unit *= a
    unit += mean + b
    return _back(chunk, unit, clip)


def noise_augment(
    chunk: Chunk,
    rng: np.random.Generator,
    mode: str = "gaussian",
    var: float = 0.01,
    clip: bool = True,
    amount: float = 0.05,
    salt_vs_pepper: float = 0.5,
) -> Chunk:
    """Add random noise in normalised units (the modes of skimage's random_noise).

    - ``gaussian``: x + N(0, var);
    - ``speckle``: x + x * N(0, var);
    - ``poisson``: Poisson counts with 2^ceil(log2(#distinct values)) levels;
    - ``s&p`` (salt-and-pepper): a fraction `amount` of the voxels is set to 1 (salt, with
      probability `salt_vs_pepper`) or 0 (pepper); `var` is not used.

    `clip` clips to [0, 1] (integer dtypes are always clipped).
    """
    _check_image(chunk, "noise-augment")
    mode = _NOISE_ALIASES.get(mode, mode)
    if mode not in NOISE_MODES:
        raise ChunkflowError(
            f"unknown noise mode {mode!r}: expected one of {', '.join(NOISE_MODES)}"
        )
    if var < 0:
        raise ChunkflowError(f"noise variance must be >= 0, got {var}")
    check_probability(amount, "amount")
    check_probability(salt_vs_pepper, "salt_vs_pepper")
    unit = to_unit(np.asarray(chunk))
    if mode in ("gaussian", "speckle"):
        noise = rng.standard_normal(unit.shape, dtype=np.float32)
        noise *= np.float32(math.sqrt(var))
        if mode == "speckle":
            noise *= unit
        unit += noise
    elif mode == "poisson":
        levels = 2.0 ** math.ceil(math.log2(max(len(np.unique(unit)), 2)))
        unit = (rng.poisson(np.clip(unit, 0.0, None) * levels) / levels).astype(np.float32)
    else:
        flip = rng.random(unit.shape, dtype=np.float32) < amount
        salt = rng.random(unit.shape, dtype=np.float32) < salt_vs_pepper
        unit[flip] = salt[flip]
    return _back(chunk, unit, clip)


def defect_augment(
    chunk: Chunk,
    rng: np.random.Generator,
    prob_missing: float = 0.05,
    prob_low_contrast: float = 0.05,
    contrast_scale: float = 0.1,
) -> Chunk:
    """Section defects, drawn per z section: missing (set to 0) or low contrast.

    A low-contrast section is pulled towards its mean: mean + (x - mean) * contrast_scale.
    A section is missing with probability `prob_missing`, else low-contrast with probability
    `prob_low_contrast` (their sum is at most 1).
    """
    _check_image(chunk, "defect-augment")
    check_probability(prob_missing, "prob_missing")
    check_probability(prob_low_contrast, "prob_low_contrast")
    if prob_missing + prob_low_contrast > 1.0:
        raise ChunkflowError(
            f"prob_missing {prob_missing} + prob_low_contrast {prob_low_contrast} exceeds 1"
        )
    array = np.asarray(chunk)
    draw = rng.random(array.shape[-3])
    missing = draw < prob_missing
    low_contrast = ~missing & (draw < prob_missing + prob_low_contrast)
    if not (missing.any() or low_contrast.any()):
        return chunk.with_array(array.copy(), chunk.layer_type)
    unit = to_unit(array)
    for z in np.flatnonzero(low_contrast):
        section = unit[..., z, :, :]
        mean = np.float32(_finite_mean(section))
        section -= mean
        section *= np.float32(contrast_scale)
        section += mean
    unit[..., missing, :, :] = 0
    return _back(chunk, unit)


def check_interval(interval, what: str) -> None:
    low, high = interval
    if not low <= high:
        raise ChunkflowError(f"{what} interval ({low}, {high}) must have low <= high")


def check_probability(value: float, what: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ChunkflowError(f"{what} must be a probability in [0, 1], got {value}")
