"""Chunks and precomputed volumes: a cutout grown by the context operators downstream need, a
volume's info taken from a chunk, a chunk saved with its thumbnail. What the cutout,
create-info and save operators do, callable from Python."""

from __future__ import annotations

from chunkflow.chunk import Chunk
from chunkflow.errors import ParameterError
from chunkflow.geometry import BoundingBox


def cutout_with_context(
    volume_path: str,
    bbox: BoundingBox,
    wanted: BoundingBox | None = None,
    mip: int = 0,
    fill_missing: bool = False,
    layer_type=None,
) -> Chunk:
    """The chunk of `bbox` at `mip`, grown to `wanted` (what the operators after need) as far as
    the volume has data; `bbox` itself must lie inside it unless `fill_missing`
    (`chunkflow.context.read_with_context`)."""
    from chunkflow.context import read_with_context
    from chunkflow.io.precomputed import read_precomputed

    def read(box, clip):
        return read_precomputed(volume_path, box, mip, fill_missing, layer_type, clip=clip)

    return read_with_context(read, bbox, wanted)


def info_parameters(
    chunk: Chunk | None = None,
    num_channels: int | None = None,
    layer_type=None,
    dtype=None,
    voxel_size=None,
    voxel_offset=None,
    volume_size=None,
) -> dict:
    """The arguments of `chunkflow.io.precomputed.create_info` for a volume holding `chunk`:
    what is given, else the chunk's, else 1 channel of uint8 image with voxel size 1 1 1 at
    offset 0 0 0. `volume_size` has no default: without a chunk it must be given."""
    if chunk is not None:
        num_channels = num_channels or chunk.num_channels
        layer_type = layer_type or chunk.layer_type
        dtype = dtype or chunk.dtype
        voxel_size = voxel_size or chunk.voxel_size
        voxel_offset = voxel_offset if voxel_offset is not None else chunk.voxel_offset
        volume_size = volume_size or chunk.spatial_shape
    if volume_size is None:
        raise ParameterError("`volume_size` is required (or `chunk` to take it from a chunk)")
    return dict(
        volume_size=volume_size,
        voxel_size=voxel_size or (1, 1, 1),
        voxel_offset=voxel_offset or (0, 0, 0),
        dtype=dtype or "uint8",
        num_channels=num_channels or 1,
        layer_type=layer_type or "image",
    )


def save_chunk(
    chunk: Chunk,
    volume_path: str,
    mip: int = 0,
    block_size=(64, 64, 64),
    encoding: str = "raw",
    non_aligned_writes: bool = False,
    name: str = "chunk",
    compress: str | None = None,
    create_thumbnail: bool = False,
    thumbnail_mip: int | None = None,
) -> tuple[str, int] | None:
    """Write `chunk` into the volume at `volume_path`, its info made from the chunk when
    missing (`chunkflow.io.precomputed.write_precomputed`); with `create_thumbnail`, also its
    uint8 thumbnail at `thumbnail_mip` into the thumbnail layer (`chunkflow.image.thumbnail`).
    A chunk that cannot make its thumbnail is refused before anything is written. Returns
    (thumbnail layer, mip) when a thumbnail was written."""
    from chunkflow.io.precomputed import write_precomputed

    if create_thumbnail:
        from chunkflow.image.thumbnail import thumbnail_mip_for, write_thumbnail

        thumbnail_mip = thumbnail_mip_for(chunk, volume_path, mip, thumbnail_mip)
    write_precomputed(
        chunk,
        volume_path,
        mip,
        True,
        block_size,
        encoding,
        non_aligned_writes,
        name=name,
        compress=compress,
    )
    if create_thumbnail:
        return write_thumbnail(chunk, volume_path, mip, thumbnail_mip, non_aligned_writes)
    return None
