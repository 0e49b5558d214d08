"""TIFF chunks via tifffile. The dtype is kept; geometry travels in the JSON description.

A 2D image reads as one section (1, y, x). Voxel offset, voxel size and layer type are stored as
tifffile "shaped" metadata and read back when present.
"""

from __future__ import annotations

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.files import atomic_output, require_file


def read_tif(
    path: str,
    bbox: BoundingBox | None = None,
    voxel_offset=None,
    voxel_size=None,
    dtype=None,
    layer_type=None,
) -> Chunk:
    """Read a chunk from a TIFF file; `bbox` (global coordinates) cuts out a part."""
    import tifffile

    require_file(path, "a TIFF file")
    try:
        with tifffile.TiffFile(path) as tif:
            array = tif.asarray()
            meta = (tif.shaped_metadata or [{}])[0] if tif.is_shaped else {}
    except (tifffile.TiffFileError, ValueError) as err:
        raise ChunkflowError(f"{path} is not a TIFF file ({err})") from None
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim not in (3, 4):
        raise ChunkflowError(f"{path}: image of shape {array.shape}; expected 2D, 3D or 4D")
    chunk = Chunk(
        array,
        voxel_offset if voxel_offset is not None else meta.get("voxel_offset", (0, 0, 0)),
        voxel_size if voxel_size is not None else meta.get("voxel_size", (1, 1, 1)),
        layer_type if layer_type is not None else meta.get("layer_type"),
    )
    if bbox is not None:
        if bbox.is_empty or not chunk.bbox.contains(bbox):
            raise ChunkflowError(
                f"{path}: cutout {bbox} is outside the data, which covers {chunk.bbox}"
            )
        chunk = chunk.crop(bbox)
    if dtype is not None:
        chunk = chunk.cast(dtype)
    return chunk


def write_tif(chunk: Chunk, path: str, compression: str = "none") -> None:
    """Write a chunk to a TIFF file atomically, keeping its dtype and geometry."""
    import tifffile

    metadata = {
        "voxel_offset": list(chunk.voxel_offset),
        "voxel_size": list(chunk.voxel_size),
        "layer_type": chunk.layer_type.value,
    }
    with atomic_output(path) as tmp:
        tifffile.imwrite(
            tmp,
            np.asarray(chunk),
            metadata=metadata,
            photometric="minisblack",
            compression=None if compression == "none" else compression,
        )
