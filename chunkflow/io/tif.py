"""TIFF chunks via tifffile. The dtype is kept; geometry travels in the JSON description.

A 2D image reads as one section (1, y, x); an RGB(A) image as channels first, (c, 1, y, x) or
(c, z, y, x). Voxel offset, voxel size and layer type are stored as tifffile "shaped" metadata
and read back when present.
"""

from __future__ import annotations

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.files import atomic_output, reader, require_file
from chunkflow.io.metadata import cutout_box, stored_array, stored_layer_type, stored_vector


@reader("TIFF file")
def read_tif(
    path: str,
    bbox: BoundingBox | None = None,
    voxel_offset=None,
    voxel_size=None,
    dtype=None,
    layer_type=None,
    clip: bool = False,
) -> Chunk:
    """Read a chunk from a TIFF file; `bbox` (global coordinates) cuts out a part (with `clip`,
    the part of `bbox` inside the data)."""
    import tifffile

    require_file(path, "a TIFF file")
    try:
        with tifffile.TiffFile(path) as tif:
            array = tif.asarray()
            axes = tif.series[0].axes if tif.series else ""
            meta = (tif.shaped_metadata or [{}])[0] if tif.is_shaped else {}
    except (tifffile.TiffFileError, ValueError) as err:
        raise ChunkflowError(f"{path} is not a TIFF file ({err})") from None
    if axes.endswith("S") and array.ndim == len(axes):  # RGB(A) samples: channels first
        array = np.moveaxis(array, -1, 0)
        if array.ndim == 3:
            array = array[:, np.newaxis]
    elif array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim not in (3, 4):
        raise ChunkflowError(f"{path}: image of shape {array.shape}; expected 2D, 3D or 4D")
    stored_array(path, array.shape, array.dtype)
    if not isinstance(meta, dict):
        meta = {}
    if voxel_offset is None:
        voxel_offset = stored_vector(path, "voxel_offset", meta.get("voxel_offset", (0, 0, 0)))
    if voxel_size is None:
        voxel_size = stored_vector(path, "voxel_size", meta.get("voxel_size", (1, 1, 1)), True)
    if layer_type is None:
        layer_type = stored_layer_type(path, meta.get("layer_type"))
    chunk = Chunk(array, voxel_offset, voxel_size, layer_type)
    if bbox is not None:
        chunk = chunk.crop(cutout_box(path, bbox, chunk.bbox, clip))
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
