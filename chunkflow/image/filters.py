"""Filters and voting over chunks: Gaussian smoothing and channel voting."""

from __future__ import annotations

import numpy as np

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError, ParameterError


def gaussian_filter(chunk: Chunk, sigma: float = 1.0, three_d: bool = False) -> Chunk:
    """Gaussian smoothing (scipy.ndimage, `reflect` borders), keeping the dtype.

    By default each z section is filtered on its own (2D, in y and x); `three_d` filters along
    z too. Channels are filtered independently. Integer results are rounded and clipped to the
    dtype range; the computation runs in float32 (float64 for float64 input).
    """
    from scipy import ndimage

    if not sigma > 0:
        raise ParameterError(f"`sigma` {sigma}: expected a positive number")
    if chunk.is_segmentation or chunk.dtype == np.bool_:
        raise ChunkflowError(
            f"gaussian-filter needs an image or a map, not a {chunk.dtype} segmentation"
        )
    array = np.asarray(chunk)
    spatial = (sigma, sigma, sigma) if three_d else (0.0, sigma, sigma)
    sigmas = spatial if array.ndim == 3 else (0.0, *spatial)
    work = np.float64 if array.dtype == np.float64 else np.float32
    out = ndimage.gaussian_filter(array.astype(work), sigmas, output=work)
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return chunk.with_array(out.astype(array.dtype), chunk.layer_type)


def channel_voting(chunk: Chunk) -> Chunk:
    """A (c, z, y, x) map as a uint8 segmentation: the channel with the largest value, plus 1.

    Voxels where every channel is 0 get 0. Ties go to the lowest channel.
    """
    array = np.asarray(chunk)
    if array.ndim != 4:
        raise ChunkflowError(
            f"channel-voting needs a (c, z, y, x) map, got a chunk of shape {array.shape}"
        )
    if array.shape[0] > 255:
        raise ChunkflowError(f"channel-voting supports at most 255 channels, got {array.shape[0]}")
    out = (np.argmax(array, axis=0) + 1).astype(np.uint8)
    out[np.all(array == 0, axis=0)] = 0
    return Chunk(out, chunk.voxel_offset, chunk.voxel_size, LayerType.SEGMENTATION)
