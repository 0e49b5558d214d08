"""Neuroglancer precomputed volumes through cloud-volume.

Paths: `file://` works offline; `gs://` and `s3://` use the credentials cloud-volume finds in
its standard places. cloud-volume speaks (x, y, z[, c]); this module converts to and from our
(z, y, x) / (c, z, y, x) chunks and is the only place that does.

Local volumes are written uncompressed (`compress=False`) so that every precomputed reader,
tensorstore included, finds the chunk files under their plain names; cloud volumes gzip their
blocks (stored with `Content-Encoding: gzip`, which neuroglancer, tensorstore and cloud-volume
read) unless told otherwise (`compress`).

Volumes are opened by `chunkflow.io.volume.open_volume` (also importable from here); chunks
that go into sharded scales are written by `chunkflow.io.shard_writes`.
"""

from __future__ import annotations

import math

import numpy as np

from chunkflow.chunk import Chunk, Grid, LayerType, check_same_grid
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io import PRECOMPUTED_ENCODINGS
from chunkflow.io.files import COMPRESSION_SUFFIXES, staged_writes
from chunkflow.io.metadata import stored_vector
from chunkflow.io.shard_writes import write_sharded
from chunkflow.io.shards import add_sharding
from chunkflow.io.volume import cv_bounds, load_cloudvolume, open_volume
from chunkflow.memory import require_memory


def volume_bounds(path: str, mip: int = 0) -> BoundingBox:
    """The voxel bounds of a volume at `mip`, (z, y, x)."""
    return cv_bounds(open_volume(path, mip))


def volume_grid(path: str, mip: int = 0) -> Grid:
    """The voxel size and bounds of a volume at `mip`, (z, y, x), for `check_same_grid`."""
    return _grid(open_volume(path, mip))


def _grid(vol) -> Grid:
    return Grid(tuple(float(v) for v in reversed(vol.resolution)), cv_bounds(vol))


def _voxel_size(vol, path: str, mip: int) -> Cartesian:
    """The voxel size of a chunk read at `mip`: the resolution, in whole units."""
    resolution = list(reversed(vol.resolution))
    return stored_vector(path, f"the resolution at mip {mip} (z, y, x)", resolution, True)


def _layer_type(vol, dtype, num_channels, ndim) -> LayerType:
    if vol.layer_type == "segmentation":
        return LayerType.SEGMENTATION
    return LayerType.default_for(dtype, ndim, num_channels)


def read_precomputed(
    path: str,
    bbox: BoundingBox,
    mip: int = 0,
    fill_missing: bool = False,
    layer_type=None,
    clip: bool = False,
) -> Chunk:
    """Cut out `bbox` (voxels at `mip`) from a volume.

    With `fill_missing`, missing blocks and every voxel outside the volume's bounds read as
    zeros (as chunkflow 1.x's unbounded volumes did), so a cutout grown by a margin works at the
    volume's border; without it a cutout past the bounds is an error naming them, unless
    `clip`: then the part of `bbox` inside the bounds is read.
    """
    vol = open_volume(path, mip, fill_missing=fill_missing)
    bounds = cv_bounds(vol)
    if bbox.is_empty:
        raise ChunkflowError(f"{path}: cutout {bbox} at mip {mip} is empty")
    if clip and not fill_missing and not bbox.intersect(bounds).is_empty:
        bbox = bbox.intersect(bounds)
    inside = bbox.intersect(bounds)
    if inside != bbox and not fill_missing:
        raise ParameterError(
            f"{path}: cutout {bbox} at mip {mip} is outside the volume, which covers {bounds} "
            "(use `fill_missing` to read zeros past its edge)"
        )
    shape = (vol.num_channels, *bbox.shape)
    # the chunk, and cloud-volume's cutout of the part inside the volume on its way in
    require_memory(
        2 * math.prod(shape) * np.dtype(vol.dtype).itemsize, f"{path}: cutout {bbox} at mip {mip}"
    )
    if inside == bbox:
        # cloud-volume's x, y, z, c cutout is Fortran-ordered: its transpose is the C-ordered
        # chunk itself, without the copy (slow for a transpose) into an array of zeros
        array = _read_inside(vol, path, inside, mip)
        if not (array.flags.c_contiguous and array.flags.writeable):
            array = np.array(array, order="C")
    else:
        array = np.zeros(shape, dtype=np.dtype(vol.dtype))
        if not inside.is_empty:
            local = inside.shift(-bbox.start).to_slices()
            array[(slice(None), *local)] = _read_inside(vol, path, inside, mip)
    if array.shape[0] == 1:
        array = array[0]
    voxel_size = _voxel_size(vol, path, mip)
    if layer_type is None:
        layer_type = _layer_type(vol, array.dtype, vol.num_channels, array.ndim)
    return Chunk(array, bbox.start, voxel_size, layer_type)


def _read_inside(vol, path: str, bbox: BoundingBox, mip: int) -> np.ndarray:
    """The (c, z, y, x) voxels of `bbox`, which lies inside the volume."""
    _, exceptions = load_cloudvolume()
    _check_local_blocks(vol, path, bbox, mip)
    x0, y0, z0 = bbox.start.xyz
    x1, y1, z1 = bbox.stop.xyz
    try:
        cutout = vol[x0:x1, y0:y1, z0:z1]
    except exceptions.EmptyVolumeException:
        raise ParameterError(
            f"{path}: data missing in {bbox} at mip {mip} (use `fill_missing` to read zeros)"
        ) from None
    except Exception as err:  # a block the codec cannot decode: damaged, never data
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise ChunkflowError(
            f"{path}: a block in {bbox} at mip {mip} is damaged ({reason})"
        ) from err
    return np.transpose(np.asarray(cutout), (3, 2, 1, 0))


def _check_local_blocks(vol, path: str, bbox: BoundingBox, mip: int) -> None:
    """Damaged block files of a local volume in `bbox`: an empty file, or a raw block of the
    wrong size, is one line naming it (cloud-volume would read an empty one as a missing block,
    zeros under --fill-missing). A missing block is not damage. A stat per block and suffix."""
    import itertools
    import os

    if not path.startswith("file://") or vol.meta.sharding(mip):
        return
    root = os.path.join(path[len("file://") :], vol.meta.key(mip))
    block = Cartesian.from_xyz(vol.meta.chunk_size(mip))
    bounds = cv_bounds(vol)
    raw = vol.meta.encoding(mip) == "raw"
    voxel_bytes = np.dtype(vol.dtype).itemsize * vol.num_channels
    # plain ints per block (x, y, z, as the file names): thousands of blocks per read
    spans = []
    for a0, a1, b0, b1, n in zip(
        bbox.start.xyz, bbox.stop.xyz, bounds.start.xyz, bounds.stop.xyz, block.xyz
    ):
        starts = range(b0 + (a0 - b0) // n * n, b0 + ((a1 - b0 - 1) // n + 1) * n, n)
        spans.append([(f"{s}-{min(s + n, b1)}", min(s + n, b1) - s) for s in starts])
    for (nz, sz), (ny, sy), (nx, sx) in itertools.product(*spans[::-1]):  # z, y, x order
        base = os.path.join(root, f"{nx}_{ny}_{nz}")
        expected = sx * sy * sz * voxel_bytes
        for suffix in COMPRESSION_SUFFIXES:
            file = base + suffix
            try:
                size = os.stat(file).st_size
            except FileNotFoundError:
                continue
            if size == 0 or (raw and not suffix and size != expected):
                raise ChunkflowError(
                    f"{file}: damaged block ({size} bytes, expected "
                    f"{expected if raw and not suffix else 'more'}); rewrite it or delete it "
                    "to read it as missing"
                )


def zero_chunk(path: str, bbox: BoundingBox, mip: int = 0) -> Chunk:
    """A chunk of zeros covering `bbox` with the volume's dtype, channels, voxel size at `mip`
    and layer type: what a task whose output was skipped writes (as chunkflow 1.x did)."""
    vol = open_volume(path, mip)
    channels = vol.num_channels
    shape = tuple(bbox.shape) if channels == 1 else (channels, *bbox.shape)
    array = np.zeros(shape, dtype=np.dtype(vol.dtype))
    layer_type = _layer_type(vol, array.dtype, channels, array.ndim)
    return Chunk(array, bbox.start, _voxel_size(vol, path, mip), layer_type)


def create_info(
    path: str,
    volume_size,
    voxel_size=(1, 1, 1),
    voxel_offset=(0, 0, 0),
    dtype="uint8",
    num_channels: int = 1,
    layer_type=LayerType.IMAGE,
    block_size=(64, 64, 64),
    encoding: str = "raw",
    max_mip: int = 0,
    factor=(1, 2, 2),
    sharded: bool = False,
    shard_bytes: int | None = None,
) -> None:
    """Write the `info` of a new precomputed volume. Vectors are (z, y, x).

    `max_mip` adds downsampled scales, each `factor` coarser than the one before. `sharded`
    stores every scale in shards of about `shard_bytes` uncompressed (`chunkflow.io.shards`).
    """
    CloudVolume, _ = load_cloudvolume()
    layer_type = LayerType.parse(layer_type)
    volume_size, block_size = Cartesian(volume_size), Cartesian(block_size)
    if min(volume_size) <= 0 or min(block_size) <= 0:
        raise ChunkflowError(
            f"volume size {tuple(volume_size)} and block size {tuple(block_size)} must be positive"
        )
    check_encoding(encoding, dtype, num_channels, layer_type)  # before anything is written
    info = CloudVolume.create_new_info(
        num_channels=num_channels,
        layer_type="segmentation" if layer_type is LayerType.SEGMENTATION else "image",
        data_type=str(np.dtype(dtype)),
        encoding=encoding,
        resolution=Cartesian(voxel_size).xyz,
        voxel_offset=Cartesian(voxel_offset).xyz,
        volume_size=volume_size.xyz,
        chunk_size=block_size.minimum(volume_size).xyz,
        max_mip=max_mip,
        factor=Cartesian(factor).xyz,
    )
    if sharded:
        voxel_bytes = np.dtype(dtype).itemsize * num_channels
        for scale in info["scales"]:
            add_sharding(scale, voxel_bytes, shard_bytes)
    vol = CloudVolume(path, info=info, progress=False, parallel=1, compress=False)
    vol.commit_info()


# Encodings cloud-volume reads but neuroglancer and tensorstore do not.
UNVIEWABLE_ENCODINGS = ("crackle", "fpzip")


def check_encoding(encoding: str, dtype, num_channels: int, layer_type) -> None:
    """Refuse an encoding that cannot store this data here, before any info is written.

    A small block of the dtype and channels goes through the codec and back: a codec that is
    not installed, a dtype or channel count it cannot take, or a lossy codec for labels is one
    line naming the encoding and why. Encodings no viewer reads get a warning.
    """
    import logging

    from cloudvolume import chunks

    dtype, layer_type = np.dtype(dtype), LayerType.parse(layer_type)
    what = f"encoding {encoding!r} for {layer_type.value} {dtype} x {num_channels} channel(s)"
    if encoding not in PRECOMPUTED_ENCODINGS:
        raise ChunkflowError(
            f"encoding {encoding!r}: expected one of {', '.join(PRECOMPUTED_ENCODINGS)}"
        )
    if encoding == "jpeg" and layer_type is LayerType.SEGMENTATION:
        raise ChunkflowError(f"{what}: jpeg is lossy and would change label ids")
    if encoding == "compressed_segmentation" and layer_type is not LayerType.SEGMENTATION:
        raise ChunkflowError(f"{what}: compressed_segmentation is for segmentation layers")
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        sample = rng.random((8, 8, 8, num_channels)).astype(dtype)
    else:
        sample = rng.integers(0, 200, (8, 8, 8, num_channels)).astype(dtype)
    try:
        data = chunks.encode(sample, encoding, block_size=(8, 8, 8))
        back = chunks.decode(data, encoding, shape=sample.shape, dtype=dtype, block_size=(8, 8, 8))
    except Exception as err:  # the codec's own words: not installed, wrong dtype, ...
        reason = " ".join(str(err).split())[:160]
        raise ChunkflowError(f"{what} does not work here ({reason})") from None
    if encoding != "jpeg" and not np.array_equal(np.asarray(back).reshape(sample.shape), sample):
        raise ChunkflowError(f"{what} does not give the data back unchanged")
    if encoding in UNVIEWABLE_ENCODINGS:
        logging.getLogger(__name__).warning(
            "%s: readable by cloud-volume and igneous, not by neuroglancer or tensorstore", what
        )


def write_precomputed(
    chunk: Chunk,
    path: str,
    mip: int = 0,
    create: bool = True,
    block_size=(64, 64, 64),
    encoding: str = "raw",
    non_aligned_writes: bool = False,
    name: str = "chunk",
    compress: str | None = None,
) -> None:
    """Write `chunk` into the volume at `path`.

    If the volume does not exist and `create` is set, its info is made from the chunk (bounds =
    the chunk's bounding box, voxel size, dtype, channels and layer type of the chunk). The
    chunk must have the volume's voxel size at `mip` and lie inside it; `name` names it in
    errors. `compress` (gzip, br, none) encodes the blocks of an unsharded scale; by default
    gzip for cloud paths, none for local ones.
    """
    _, exceptions = load_cloudvolume()
    if create and not volume_exists(path):
        if mip != 0:
            raise ChunkflowError(
                f"{path}: no volume to write mip {mip} into; create it with create-info"
            )
        create_info(
            path,
            chunk.spatial_shape,
            chunk.voxel_size,
            chunk.voxel_offset,
            chunk.dtype,
            chunk.num_channels,
            chunk.layer_type,
            block_size,
            encoding,
        )
    # a non-aligned write reads the blocks it touches; blocks never written count as zeros
    vol = open_volume(
        path,
        mip,
        fill_missing=non_aligned_writes,
        write=True,
        non_aligned_writes=non_aligned_writes,
        compress=compress,
    )
    if np.dtype(vol.dtype) != chunk.dtype:
        raise ChunkflowError(
            f"{path}: chunk dtype {chunk.dtype} does not fit the volume's {vol.dtype}"
        )
    if vol.num_channels != chunk.num_channels:
        raise ChunkflowError(
            f"{path}: chunk has {chunk.num_channels} channel(s), the volume {vol.num_channels}"
        )
    check_same_grid((name, chunk), (f"the volume {path} at mip {mip}", _grid(vol)), "inside")
    if vol.meta.sharding(mip) is not None:
        write_sharded(vol, path, mip, chunk)
        return
    array = np.asarray(chunk)
    array = array.T if array.ndim == 3 else np.transpose(array, (3, 2, 1, 0))
    x0, y0, z0 = chunk.bbox.start.xyz
    x1, y1, z1 = chunk.bbox.stop.xyz
    try:
        with staged_writes():  # every block of the chunk, or none
            vol[x0:x1, y0:y1, z0:z1] = array
    except exceptions.AlignmentError:
        raise ParameterError(
            f"{path}: chunk {chunk.bbox} is not aligned to the volume's blocks "
            f"{tuple(Cartesian.from_xyz(vol.chunk_size))} (z,y,x); align the chunk or use "
            "`non_aligned_writes`"
        ) from None


def volume_exists(path: str) -> bool:
    if path.startswith("file://"):  # no cloudfiles import (0.4 s) for a local check
        import os

        return os.path.isfile(os.path.join(path[len("file://") :], "info"))
    from cloudfiles import CloudFiles

    return CloudFiles(path).exists("info")
