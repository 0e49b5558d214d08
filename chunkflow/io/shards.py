"""Sharded precomputed volumes (`neuroglancer_uint64_sharded_v1`): parameters and geometry.

A sharded scale stores its blocks in a few big shard files. A block's compressed Morton code
(its grid position's bits interleaved x, y, z, skipping an axis once its bits are used up) is
split as `[shard bits | minishard bits | preshift bits]`; with the `identity` hash the blocks of
one shard are an aligned box of the block grid, which `shard_shape` gives. Writing part of a
shard means reading the rest of it back: `chunkflow.io.shard_writes` does that through
tensorstore, or refuses naming the shard (see `partial_shards`).

`shard_spec` picks the parameters from the scale's size, block size and voxel bytes, on the
principles igneous follows: shards of about `shard_bytes` uncompressed, a shard index of a few
KiB and minishards of at most a few thousand blocks.
"""

from __future__ import annotations

import itertools
import math

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian

SHARD_TYPE = "neuroglancer_uint64_sharded_v1"
DEFAULT_SHARD_BYTES = 3_500_000_000  # uncompressed bytes of a shard (igneous' memory target)
MAX_SHARD_INDEX_BYTES = 8192
MAX_MINISHARD_INDEX_BYTES = 40_000
MAX_BLOCKS_PER_MINISHARD = 4000


def grid_bits(volume_size, block_size) -> Cartesian:
    """Bits of each axis (z, y, x) of the block grid in the compressed Morton code."""
    grid = [math.ceil(v / b) for v, b in zip(volume_size, block_size)]
    return Cartesian(*(max(0, math.ceil(math.log2(g))) if g > 1 else 0 for g in grid))


def shard_spec(
    volume_size,
    block_size,
    voxel_bytes: int,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    data_encoding: str = "gzip",
) -> dict:
    """A sharding specification for a scale of `volume_size` voxels in blocks of `block_size`
    (both z, y, x), `voxel_bytes` bytes per voxel (all channels).

    A shard holds 2**k blocks, the largest power of two within `shard_bytes` (at least one
    block; the whole scale when it is smaller). The shard's blocks are split into minishards
    until each has at most MAX_BLOCKS_PER_MINISHARD blocks and a minishard index of at most
    MAX_MINISHARD_INDEX_BYTES, as long as the shard index stays within MAX_SHARD_INDEX_BYTES;
    past that the shard is halved. The rest of the Morton code's bits number the shards.
    """
    volume_size, block_size = Cartesian(volume_size), Cartesian(block_size)
    if shard_bytes < 1:
        raise ChunkflowError(f"shard bytes {shard_bytes} must be positive")
    total_bits = sum(grid_bits(volume_size, block_size))
    if total_bits > 64:
        raise ChunkflowError(
            f"a volume of {tuple(volume_size)} voxels in blocks of {tuple(block_size)} needs "
            f"{total_bits} bits to number its blocks, more than 64: use larger blocks"
        )
    block_bytes = block_size.prod * voxel_bytes
    in_shard = min(int(math.log2(max(1, shard_bytes // block_bytes))), total_bits)
    while True:
        minishard_bits = 0
        while minishard_bits < in_shard and (
            2 ** (in_shard - minishard_bits) > MAX_BLOCKS_PER_MINISHARD
            or 24 * 2 ** (in_shard - minishard_bits) > MAX_MINISHARD_INDEX_BYTES
        ):
            minishard_bits += 1
        if 16 * 2**minishard_bits <= MAX_SHARD_INDEX_BYTES or in_shard == 0:
            break
        in_shard -= 1  # too many minishards for a small shard index: smaller shards
    return {
        "@type": SHARD_TYPE,
        "data_encoding": data_encoding,
        "hash": "identity",
        "minishard_bits": minishard_bits,
        "minishard_index_encoding": "gzip",
        "preshift_bits": in_shard - minishard_bits,
        "shard_bits": total_bits - in_shard,
    }


def tiling_shard_spec(
    volume_size,
    block_size,
    voxel_bytes: int,
    tile,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    data_encoding: str = "gzip",
) -> dict:
    """The `shard_spec` of the largest shard within `shard_bytes` whose shape tiles `tile`
    (z, y, x voxels, a box of whole blocks such as a task): writers of whole tiles on a grid of
    `tile` from the volume's start then never share a shard.

    The shard is at most the tile's bytes; while its shape does not divide the tile it holds
    half as many blocks. Raises when `tile` is no whole number of blocks.
    """
    volume_size, block_size, tile = Cartesian(volume_size), Cartesian(block_size), Cartesian(tile)
    if any(tile % block_size):
        raise ChunkflowError(
            f"a tile of {_text(tile)} voxels is no whole number of blocks of {_text(block_size)} "
            "(z y x): no shard can tile it"
        )
    block_bytes = block_size.prod * voxel_bytes
    limit = min(shard_bytes, tile.prod * voxel_bytes)
    while True:
        spec = shard_spec(volume_size, block_size, voxel_bytes, limit, data_encoding)
        if not any(tile % shard_shape(spec, volume_size, block_size)):
            return spec
        # a one-block shard divides the tile, so this ends
        limit = 2 ** (spec["preshift_bits"] + spec["minishard_bits"] - 1) * block_bytes


def _text(vector) -> str:
    return " ".join(map(str, vector))


def shard_shape(spec: dict, volume_size, block_size) -> Cartesian:
    """The voxels (z, y, x) of one shard: its blocks form an aligned box of the block grid.

    Raises for a hash other than `identity`, whose shards are no boxes.
    """
    if spec.get("hash") != "identity":
        raise ChunkflowError(
            f"shards hashed with {spec.get('hash')!r} are scattered, not boxes of blocks"
        )
    bits = list(reversed(grid_bits(volume_size, block_size)))  # x, y, z: Morton order
    left = int(spec["preshift_bits"]) + int(spec["minishard_bits"])
    taken = [0, 0, 0]
    level = 0
    while left > 0 and level < max(bits, default=0):
        for axis in range(3):
            if left > 0 and level < bits[axis]:
                taken[axis] += 1
                left -= 1
        level += 1
    blocks = Cartesian.from_xyz([2**t for t in taken])
    return Cartesian(block_size) * blocks


def shards_touched(bbox: BoundingBox, bounds: BoundingBox, shape) -> list[BoundingBox]:
    """The shards (each clipped to the volume's `bounds`) that `bbox` overlaps."""
    shape = Cartesian(shape)
    first = (bbox.start - bounds.start) // shape
    last = (bbox.stop - bounds.start - 1) // shape
    boxes = []
    for index in itertools.product(*(range(a, b + 1) for a, b in zip(first, last))):
        start = bounds.start + Cartesian(index) * shape
        boxes.append(BoundingBox(start, start + shape).intersect(bounds))
    return boxes


def partial_shards(bbox: BoundingBox, bounds: BoundingBox, shape) -> list[BoundingBox]:
    """The shards that `bbox` covers only in part."""
    return [s for s in shards_touched(bbox, bounds, shape) if s.intersect(bbox) != s]


def add_sharding(
    scale: dict, voxel_bytes: int, shard_bytes: int | None = None, tile=None
) -> Cartesian:
    """Make an info's scale sharded, with parameters chosen from its size and block size (and,
    given a `tile` (z, y, x voxels), shards that tile it: `tiling_shard_spec`); returns the
    shard's shape (z, y, x) in voxels."""
    size = Cartesian.from_xyz(scale["size"])
    block = Cartesian.from_xyz(scale["chunk_sizes"][0])
    # image codecs compress each block already (igneous does the same)
    data_encoding = "raw" if scale["encoding"] in ("jpeg", "png", "fpzip", "zfpc") else "gzip"
    shard_bytes = shard_bytes or DEFAULT_SHARD_BYTES
    if tile is None:
        spec = shard_spec(size, block, voxel_bytes, shard_bytes, data_encoding)
    else:
        spec = tiling_shard_spec(size, block, voxel_bytes, tile, shard_bytes, data_encoding)
    scale["sharding"] = spec
    return shard_shape(spec, size, block)
