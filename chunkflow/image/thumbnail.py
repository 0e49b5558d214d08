"""Thumbnails: a coarse uint8 copy of a volume in the sibling layer `{volume}/thumbnail`.

As chunkflow 1.x's `save --create-thumbnail` did, each saved chunk is turned into an image and
downsampled in y and x (factor 1 2 2 per mip, z is kept) up to the thumbnail mip, and only that
mip is written. The image is:

- a float map (probabilities, affinities): `quantize`d to uint8, affinities as the mean of their
  y and x channels, other multi-channel maps as the mean of all channels (the thumbnail that
  `setup-env`'s worker command makes);
- an integer image: uint8 as it is, other integer types by their dtype range into [0, 1] and
  onto uint8 (`to_unit`, `from_unit`: int8 -128 is black, 127 white); several channels are
  averaged;
- a segmentation: kept as it is (downsampled by the block mode), in a segmentation layer.

The thumbnail mip is the layer's top mip when the layer exists, else 6 (chunkflow 1.x's). A
missing layer is created from the volume's mip 0 geometry (voxel size, offset, size), with
storage blocks of one downsampled chunk, so that every task of a regular grid writes whole
blocks of its own. The chunk's offset and size must be divisible by 2^(thumbnail mip - mip) in y
and x, as for `downsample-upload`.
"""

from __future__ import annotations

import logging

import numpy as np

from chunkflow.chunk import Chunk, LayerType, from_unit, to_unit
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import Cartesian

logger = logging.getLogger(__name__)

DEFAULT_THUMBNAIL_MIP = 6  # chunkflow 1.x's max_mip of the thumbnail layer
FACTOR = Cartesian(1, 2, 2)


def thumbnail_path_of(volume_path: str) -> str:
    """The thumbnail layer of a volume: `{volume}/thumbnail`."""
    return volume_path.rstrip("/") + "/thumbnail"


def thumbnail_image(chunk: Chunk) -> Chunk:
    """The chunk as a one-channel thumbnail image (see the module doc)."""
    from chunkflow.image.normalize import quantize

    array = np.asarray(chunk)
    if chunk.is_segmentation:
        if array.ndim == 4:
            if array.shape[0] != 1:
                raise ChunkflowError(
                    f"a thumbnail of a segmentation needs one channel, not {array.shape[0]}"
                )
            return chunk.with_array(array[0])
        return chunk
    if array.dtype.kind == "f":
        mode = "xy" if array.ndim == 4 and array.shape[0] == 3 else "mean"
        return quantize(chunk, mode)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * np.uint8(255)
    elif array.dtype != np.uint8:
        if array.dtype.kind not in "iu":
            raise ChunkflowError(f"cannot make a thumbnail of a {array.dtype} chunk")
        array = from_unit(to_unit(array), np.uint8)
    if array.ndim == 4:
        array = np.rint(array.mean(axis=0)).astype(np.uint8)
    return Chunk(array, chunk.voxel_offset, chunk.voxel_size, LayerType.IMAGE)


def thumbnail_mip_for(
    chunk: Chunk, volume_path: str, mip: int = 0, thumbnail_mip: int | None = None
) -> int:
    """The mip the thumbnail of `chunk` (at `mip`) goes to: `thumbnail_mip`, else the
    thumbnail layer's top mip, else 6. Raises unless the chunk can be downsampled to it."""
    from chunkflow.io.precomputed import open_volume, volume_exists

    path = thumbnail_path_of(volume_path)
    if thumbnail_mip is None:
        if volume_exists(path):
            thumbnail_mip = len(open_volume(path, 0).info["scales"]) - 1
        else:
            thumbnail_mip = DEFAULT_THUMBNAIL_MIP
    if thumbnail_mip <= mip:
        raise ChunkflowError(
            f"thumbnail mip {thumbnail_mip} must be above the chunk's mip {mip} ({path})"
        )
    total = _total_factor(mip, thumbnail_mip)
    if any(chunk.voxel_offset % total) or any(chunk.spatial_shape % total):
        raise ChunkflowError(
            f"a thumbnail at mip {thumbnail_mip} of chunk {chunk.bbox} at mip {mip} needs its "
            f"offset and size divisible by {' '.join(map(str, total))} (z y x); choose another "
            "thumbnail mip or chunk size"
        )
    return thumbnail_mip


def write_thumbnail(
    chunk: Chunk,
    volume_path: str,
    mip: int = 0,
    thumbnail_mip: int | None = None,
    non_aligned_writes: bool = False,
) -> tuple[str, int]:
    """Write the thumbnail of `chunk` (at `mip` of the volume at `volume_path`) into the
    thumbnail layer, creating the layer when missing. Returns (layer path, mip written)."""
    from chunkflow.image.downsample import downsample_upload
    from chunkflow.io.precomputed import volume_exists

    path = thumbnail_path_of(volume_path)
    thumbnail_mip = thumbnail_mip_for(chunk, volume_path, mip, thumbnail_mip)
    image = thumbnail_image(chunk)
    if not volume_exists(path):
        block = image.spatial_shape // _total_factor(mip, thumbnail_mip)
        _create_layer(path, volume_path, block, image, thumbnail_mip)
    _check_voxel_size(path, volume_path, mip)
    downsample_upload(
        image, path, FACTOR, mip, thumbnail_mip, thumbnail_mip + 1, non_aligned_writes
    )
    return path, thumbnail_mip


def _total_factor(mip: int, thumbnail_mip: int) -> Cartesian:
    return Cartesian(*(f ** (thumbnail_mip - mip) for f in FACTOR))


def _create_layer(path: str, volume_path: str, block, image: Chunk, thumbnail_mip: int) -> None:
    """The thumbnail layer, with the volume's mip 0 geometry and storage blocks of `block`."""
    from chunkflow.io.precomputed import create_info, open_volume

    scale = open_volume(volume_path, 0).info["scales"][0]
    create_info(
        path,
        Cartesian.from_xyz(scale["size"]),
        Cartesian.from_xyz(scale["resolution"]),
        Cartesian.from_xyz(scale["voxel_offset"]),
        image.dtype,
        1,
        image.layer_type,
        block,
        "raw",
        thumbnail_mip,
        FACTOR,
    )
    logger.info("thumbnail: created the layer %s (mips 0-%d)", path, thumbnail_mip)


def _check_voxel_size(path: str, volume_path: str, mip: int) -> None:
    """The thumbnail layer's mip `mip` must be the volume's, or the two would not line up."""
    from chunkflow.io.precomputed import open_volume

    def voxel_size(where):
        scales = open_volume(where, 0).info["scales"]
        if mip >= len(scales):
            raise ChunkflowError(f"{where}: mip {mip} does not exist")
        return [float(v) for v in reversed(scales[mip]["resolution"])]

    ours, theirs = voxel_size(path), voxel_size(volume_path)
    if not np.allclose(ours, theirs):
        raise ChunkflowError(
            f"{path}: mip {mip} has voxel size {' '.join(f'{v:g}' for v in ours)} (z y x) but "
            f"the volume {volume_path} {' '.join(f'{v:g}' for v in theirs)}"
        )
