"""NumPy `.npy` chunks. The file holds only the array: geometry comes from options, or from a
bounding box string in the file name (`0-64_0-512_0-512.npy`), as written by save-npy into a
folder."""

from __future__ import annotations

import os

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.files import atomic_output, reader, require_file
from chunkflow.io.metadata import stored_array


@reader(".npy file")
def read_npy(path: str, voxel_offset=None, voxel_size=(1, 1, 1), layer_type=None) -> Chunk:
    require_file(path, "a .npy file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ChunkflowError(f"{path} is not a .npy file ({err})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise ChunkflowError(f"{path} is an .npz archive; expected a .npy file (one array)")
    stored_array(path, array.shape, array.dtype)
    if voxel_offset is None:
        try:
            voxel_offset = BoundingBox.from_string(os.path.basename(path)).start
        except ChunkflowError:
            voxel_offset = (0, 0, 0)
    return Chunk(array, voxel_offset, voxel_size, layer_type)


def write_npy(chunk: Chunk, path: str) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(chunk), allow_pickle=False)
