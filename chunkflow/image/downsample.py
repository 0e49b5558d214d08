"""Downsampling chunks, and writing mip pyramids into precomputed volumes.

`factor` is (z, y, x). A chunk's voxel offset and size must both be divisible by the factor (by
factor**n for n mips): blocks never straddle chunks, so chunks downsampled one by one tile the
coarser mip exactly. The result has offset / factor and voxel size * factor.

- images and maps (every layer type but segmentation) are averaged, with
  tinybrain.downsample_with_averaging; integer means are truncated (the mean 2.5 becomes 2),
  as tinybrain does.
- segmentations (and bool chunks) take the most frequent label of each block, with
  igneous's rule for ties: factors 1 2 2 and 2 2 2 run tinybrain.downsample_segmentation, as
  igneous does, so the mips are the same voxel for voxel. In a 2x2 (y, x) block [[a, b], [c, d]]
  that is COUNTLESS: a if a == b or a == c, else b if b == c, else d (so a 2-2 tie [[1, 2],
  [2, 1]] gives 2, and four different labels give d); in a 2x2x2 block the label met first in
  (z, y, x) order among the most frequent. 0 is a label like any other. Other factors, where
  tinybrain strides or repeats 2x2 steps instead of taking the block's mode, take the block's
  mode with ties to the label met first in (z, y, x) order.

A pyramid is made by downsampling repeatedly, each mip from the one before (images: each from
the full-resolution voxels, as tinybrain does).
"""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np

from chunkflow.chunk import Chunk, check_same_grid
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import Cartesian
from chunkflow.progress import progress

logger = logging.getLogger(__name__)

DEFAULT_FACTOR = (1, 2, 2)
DEFAULT_NUM_UPLOAD_MIPS = 4


def as_factor(factor) -> Cartesian:
    """A downsampling factor as a `Cartesian` of three positive integers."""
    try:
        result = Cartesian(factor)
    except (TypeError, ValueError):
        result = None
    if result is None or min(result) < 1:
        raise ParameterError(f"`factor` {_text(factor)}: expected three positive integers z y x")
    return result


def factor_power(factor, num_mips: int) -> Cartesian:
    """The total factor of `num_mips` downsamplings by `factor`."""
    factor = as_factor(factor)
    return Cartesian(*(f**num_mips for f in factor))


def check_divisible(chunk: Chunk, factor, num_mips: int = 1) -> None:
    """Raise unless the chunk's offset and size are divisible by factor**num_mips."""
    factor = as_factor(factor)
    total = factor_power(factor, num_mips)
    times = "" if num_mips == 1 else f" {num_mips} times ({_text(total)} in all)"
    for what, vector in (("voxel offset", chunk.voxel_offset), ("size", chunk.spatial_shape)):
        if any(vector % total):
            raise ParameterError(
                f"cannot downsample chunk {chunk.bbox} by `factor` {_text(factor)}{times}: its "
                f"{what} {_text(vector)} is not divisible by {_text(total)}"
            )


def downsample(chunk: Chunk, factor=DEFAULT_FACTOR) -> Chunk:
    """Downsample once by `factor` (z, y, x): averaging, or the block mode for segmentation."""
    factor = as_factor(factor)
    check_divisible(chunk, factor)
    array = np.ascontiguousarray(chunk.array)
    if factor == (1, 1, 1):
        out = array.copy()
    elif chunk.is_segmentation or array.dtype == np.bool_:
        out = _mode(array, factor)
    else:
        out = _average(array, factor)
    return Chunk(out, chunk.voxel_offset // factor, chunk.voxel_size * factor, chunk.layer_type)


def pyramid(chunk: Chunk, factor=DEFAULT_FACTOR, num_mips: int = 1) -> list[Chunk]:
    """`num_mips` successive downsamplings of `chunk`; element i is i + 1 mips coarser."""
    check_divisible(chunk, factor, num_mips)
    factor = as_factor(factor)
    if not (chunk.is_segmentation or chunk.dtype == np.bool_) and factor != (1, 1, 1):
        return _average_pyramid(chunk, factor, num_mips)
    if tuple(factor) in _TINYBRAIN_MODE and _tinybrain_labels(chunk.dtype):
        return _wrap_levels(chunk, factor, _tinybrain_mode(chunk.array, factor, num_mips))
    levels = []
    for _ in range(num_mips):
        chunk = downsample(chunk, factor)
        levels.append(chunk)
    return levels


def _average_pyramid(chunk: Chunk, factor: Cartesian, num_mips: int) -> list[Chunk]:
    """All mips from one tinybrain call: each averages the full-resolution voxels, so integer
    truncation happens once per mip instead of accumulating mip after mip."""
    import tinybrain

    array = np.ascontiguousarray(chunk.array)
    levels = tinybrain.downsample_with_averaging(array.T, factor.xyz, num_mips=num_mips)
    return _wrap_levels(chunk, factor, [np.asarray(level, dtype=array.dtype).T for level in levels])


def _wrap_levels(chunk: Chunk, factor: Cartesian, levels) -> list[Chunk]:
    """Chunks of the (z, y, x) arrays `levels`, each `factor` coarser than the one before."""
    chunks, offset, voxel_size = [], chunk.voxel_offset, chunk.voxel_size
    for level in levels:
        offset, voxel_size = offset // factor, voxel_size * factor
        chunks.append(Chunk(np.ascontiguousarray(level), offset, voxel_size, chunk.layer_type))
    return chunks


def _average(array: np.ndarray, factor: Cartesian) -> np.ndarray:
    import tinybrain

    # tinybrain indexes x first: hand it the (x, y, z[, c]) view and the reversed factor
    result = tinybrain.downsample_with_averaging(array.T, factor.xyz)[0]
    return np.ascontiguousarray(np.asarray(result, dtype=array.dtype).T)


# factors (z, y, x) that tinybrain.downsample_segmentation pools by the mode, and the factor
# (x, y, z) igneous hands it for them
_TINYBRAIN_MODE = {(1, 2, 2): (2, 2, 1), (2, 2, 2): (2, 2, 2)}


def _tinybrain_labels(dtype) -> bool:
    """Whether tinybrain's mode pooling takes labels of `dtype` as they are (or as uint8)."""
    return np.dtype(dtype).kind in "iub"


def _tinybrain_mode(array: np.ndarray, factor: Cartesian, num_mips: int) -> list[np.ndarray]:
    """`num_mips` successive modes by tinybrain.downsample_segmentation, as igneous calls it;
    (z, y, x[, channels first]) arrays in and out."""
    import tinybrain

    array = np.asarray(array)
    if array.dtype == np.bool_:
        levels = _tinybrain_mode(array.view(np.uint8), factor, num_mips)
        return [level.view(np.bool_) for level in levels]
    if array.ndim == 4:  # channels first here, last for tinybrain: (x, y, z, c)
        array = np.ascontiguousarray(array)
    levels = tinybrain.downsample_segmentation(
        array.T, _TINYBRAIN_MODE[tuple(factor)], num_mips=num_mips
    )
    return [np.asarray(level).T for level in levels]


def _mode(array: np.ndarray, factor: Cartesian) -> np.ndarray:
    if tuple(factor) in _TINYBRAIN_MODE and _tinybrain_labels(array.dtype):
        return np.ascontiguousarray(_tinybrain_mode(array, factor, 1)[0])
    if array.ndim == 4:
        return np.stack([_mode(np.ascontiguousarray(channel), factor) for channel in array])
    if factor == (1, 2, 2):  # labels tinybrain does not take: the same rule in numpy
        return _countless_2x2(array)
    return _block_mode(array, factor)


def _countless_2x2(array: np.ndarray) -> np.ndarray:
    """Mode of the 2x2 (y, x) blocks [[a, b], [c, d]] by tinybrain's COUNTLESS rule: a if a == b
    or a == c, else b if b == c, else d."""
    a, b = array[:, 0::2, 0::2], array[:, 0::2, 1::2]
    c, d = array[:, 1::2, 0::2], array[:, 1::2, 1::2]
    return np.where((a == b) | (a == c), a, np.where(b == c, b, d))


def _block_mode(array: np.ndarray, factor: Cartesian) -> np.ndarray:
    """Mode of each block for any factor; ties to the label occurring first in the block."""
    (fz, fy, fx), (sz, sy, sx) = factor, array.shape
    out_shape = (sz // fz, sy // fy, sx // fx)
    blocks = array.reshape(out_shape[0], fz, out_shape[1], fy, out_shape[2], fx)
    blocks = np.ascontiguousarray(blocks.transpose(1, 3, 5, 0, 2, 4)).reshape(factor.prod, -1)
    size = factor.prod
    counts = np.ones(blocks.shape, dtype=np.min_scalar_type(size))
    for t in range(size):
        for p in range(t + 1, size):
            equal = blocks[t] == blocks[p]
            counts[t] += equal
            counts[p] += equal
    first_most = np.argmax(counts, axis=0)  # argmax takes the first of equal maxima
    return np.take_along_axis(blocks, first_most[None], axis=0)[0].reshape(out_shape)


# pyramids in precomputed volumes -------------------------------------------------------------
def mip_range(
    chunk_mip: int = 0, start_mip: int | None = None, stop_mip: int | None = None
) -> range:
    """The mips written by `downsample_upload`: start..stop - 1 (stop excluded).

    Defaults: start = chunk_mip + 1, stop = start + 4.
    """
    start = chunk_mip + 1 if start_mip is None else start_mip
    stop = start + DEFAULT_NUM_UPLOAD_MIPS if stop_mip is None else stop_mip
    if chunk_mip < 0 or start <= chunk_mip:
        raise ParameterError(
            f"`start_mip` {start} must be above the chunk's mip {chunk_mip} (`chunk_mip`)"
        )
    if stop <= start:
        raise ParameterError(
            f"`stop_mip` {stop} must be above `start_mip` {start} (the stop mip is excluded)"
        )
    return range(start, stop)


def downsample_upload(
    chunk: Chunk,
    path: str,
    factor=DEFAULT_FACTOR,
    chunk_mip: int = 0,
    start_mip: int | None = None,
    stop_mip: int | None = None,
    non_aligned_writes: bool = False,
    name: str = "chunk",
    compress: str | None = None,
) -> list[int]:
    """Downsample `chunk` (at `chunk_mip`) and write mips start..stop - 1 into the volume.

    An OME-Zarr image (`path`: local, `s3://`, `gs://`) gets levels instead of mips, added as
    needed (several processes may add them at once).

    The chunk must have the volume's voxel size at `chunk_mip` (`name` names it in errors).
    Missing scales are added to the volume's info (each `factor` coarser than the one below);
    existing scales must have the resolution that factor gives. `compress` encodes the blocks
    (gzip, br, none; by default gzip for cloud paths). Returns the mips written.
    """
    from chunkflow.io.files import staged_writes
    from chunkflow.io.precomputed import volume_grid, write_precomputed
    from chunkflow.io.shard_writes import sharded_writes

    factor = as_factor(factor)
    if factor == (1, 1, 1):
        raise ParameterError("`factor` 1 1 1 does not downsample: give a factor above 1")
    mips = mip_range(chunk_mip, start_mip, stop_mip)
    check_divisible(chunk, factor, mips[-1] - chunk_mip)
    from chunkflow.io.ome_levels import is_ome_image, write_ome_levels

    if is_ome_image(path):  # levels of an OME-Zarr image instead of mips
        levels = pyramid(chunk, factor, mips[-1] - chunk_mip)
        written = [(mip, level) for mip, level in zip(range(chunk_mip + 1, mips.stop), levels)]
        write_ome_levels(path, [(mip, level) for mip, level in written if mip in mips], name)
        return list(mips)
    grid = volume_grid(path, chunk_mip)
    check_same_grid((name, chunk), (f"the volume {path} at mip {chunk_mip}", grid), None)
    ensure_scales(path, factor, chunk_mip, mips[-1])
    levels = pyramid(chunk, factor, mips[-1] - chunk_mip)
    written = [(mip, level) for mip, level in zip(range(chunk_mip + 1, mips.stop), levels)]
    with staged_writes(), sharded_writes():  # every mip of the chunk, or none
        for mip, level in progress(written, desc="downsample-upload", unit="mip"):
            if mip in mips:
                write_precomputed(
                    level,
                    path,
                    mip,
                    create=False,
                    non_aligned_writes=non_aligned_writes,
                    name=name,
                    compress=compress,
                )
                logger.info("downsample-upload: wrote mip %d, %s, to %s", mip, level.bbox, path)
    return list(mips)


def ensure_scales(path: str, factor, chunk_mip: int, top_mip: int) -> list[int]:
    """Make sure the volume has scales up to `top_mip`, each `factor` coarser than the one below
    `chunk_mip`'s; add the missing ones to its info. Returns the mips added."""
    from chunkflow.io.precomputed import open_volume

    factor = as_factor(factor)
    vol = open_volume(path, chunk_mip, write=True)
    scales = vol.info["scales"]
    full = np.array(scales[0]["resolution"], dtype=np.float64)
    base = np.array(scales[chunk_mip]["resolution"], dtype=np.float64)
    added = []
    for mip in range(chunk_mip + 1, top_mip + 1):
        expected = base * np.array(factor.xyz, dtype=np.float64) ** (mip - chunk_mip)
        if mip < len(scales):
            found = np.array(scales[mip]["resolution"], dtype=np.float64)
            if not np.allclose(found, expected):
                raise ParameterError(
                    f"{path}: mip {mip} has voxel size {_text(found[::-1])} (z y x), but "
                    f"`factor` {_text(factor)} from mip {chunk_mip} gives {_text(expected[::-1])}"
                )
            continue
        ratio = expected / full
        if not np.allclose(ratio, np.round(ratio)):
            raise ChunkflowError(
                f"{path}: cannot add mip {mip}: voxel size {_text(expected[::-1])} is not a "
                f"whole multiple of mip 0's {_text(full[::-1])}"
            )
        with contextlib.redirect_stdout(io.StringIO()) as said:  # cloud-volume prints warnings
            vol.add_scale(np.round(ratio).astype(int))
        if said.getvalue().strip():
            logger.debug("cloud-volume: %s", " ".join(said.getvalue().split()))
        if len(scales) != mip + 1:
            raise ChunkflowError(
                f"{path}: cannot add mip {mip}: another scale already has voxel size "
                f"{_text(expected[::-1])}"
            )
        if "sharding" in scales[chunk_mip]:  # a sharded volume gets sharded mips
            from chunkflow.io.shards import add_sharding

            # shards of as many bytes as the chunk mip's (which may come from --shard-bytes)
            voxel_bytes = np.dtype(vol.dtype).itemsize * vol.num_channels
            spec, block = scales[chunk_mip]["sharding"], scales[chunk_mip]["chunk_sizes"][0]
            blocks = 2 ** (spec["preshift_bits"] + spec["minishard_bits"])
            shard_bytes = blocks * int(np.prod(block)) * voxel_bytes
            shape = add_sharding(scales[mip], voxel_bytes, shard_bytes)
            logger.info("downsample-upload: mip %d in shards of %s voxels", mip, _text(shape))
        added.append(mip)
    if added:
        vol.commit_info()
        logger.info("downsample-upload: added mips %s to %s", ", ".join(map(str, added)), path)
    return added


def _text(values) -> str:
    try:
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
    except TypeError:
        return str(values)
