"""Label maps from probability maps and label clean-up.

Output dtype: `threshold` gives uint8 (0/1); `connected_components` always gives uint32
(cc3d's compact labels, 1..N, 0 = background), whatever the input size; chunks of 2^32 voxels
or more are refused.
"""

from __future__ import annotations

import numpy as np

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError, ParameterError

CONNECTIVITIES = (6, 18, 26)


def _spatial(chunk: Chunk, what: str) -> np.ndarray:
    array = np.asarray(chunk)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ChunkflowError(
                f"{what} needs a 3D chunk (or one channel), got shape {array.shape}"
            )
        array = array[0]
    return array


def threshold(chunk: Chunk, value: float) -> Chunk:
    """Voxels above `value` become 1, the rest 0 (uint8 segmentation)."""
    array = _spatial(chunk, "threshold")
    return Chunk(
        (array > value).astype(np.uint8),
        chunk.voxel_offset,
        chunk.voxel_size,
        LayerType.SEGMENTATION,
    )


def connected_components(
    chunk: Chunk, threshold: float | None = None, connectivity: int = 6
) -> Chunk:
    """Label connected components (cc3d).

    With `threshold`, the foreground is voxels above it; without, the input is a label map and
    each object is split into its connected pieces.
    """
    import cc3d

    if connectivity not in CONNECTIVITIES:
        raise ParameterError(f"`connectivity` {connectivity}: expected 6, 18 or 26")
    array = _spatial(chunk, "connected-components")
    if threshold is not None:
        array = array > threshold
    elif array.dtype.kind == "f":
        raise ParameterError("connected-components of a float map needs `threshold`")
    if array.size >= np.iinfo(np.uint32).max:
        raise ChunkflowError(
            "a chunk of 2^32 voxels or more may hold more components than "
            "uint32 ids: use smaller chunks"
        )
    labels = cc3d.connected_components(
        np.ascontiguousarray(array), connectivity=connectivity, out_dtype=np.uint32
    )
    return Chunk(labels, chunk.voxel_offset, chunk.voxel_size, LayerType.SEGMENTATION)


def renumber(chunk: Chunk, start: int = 1, preserve_zero: bool = True) -> tuple[Chunk, dict]:
    """Relabel to consecutive ids from `start` (0 stays 0); returns the new chunk and the map."""
    import fastremap

    array, mapping = fastremap.renumber(np.array(chunk), start=start, preserve_zero=preserve_zero)
    return chunk.with_array(array), mapping


def remap(chunk: Chunk, mapping: dict, preserve_missing: bool = True) -> Chunk:
    """Replace ids by `mapping`; ids missing from it stay (or raise)."""
    import fastremap

    try:
        array = fastremap.remap(
            np.asarray(chunk), mapping, preserve_missing_labels=preserve_missing
        )
    except KeyError as err:
        raise ChunkflowError(f"id {err} is missing from the mapping") from None
    return chunk.with_array(array)


def mask_out_objects(
    chunk: Chunk, dust_threshold: int = 0, selected: set | None = None, removed: set | None = None
) -> Chunk:
    """Zero objects smaller than `dust_threshold` voxels, not in `selected`, or in `removed`."""
    import fastremap

    array = np.array(chunk)
    drop = set(removed or ())
    if dust_threshold > 0:
        ids, counts = fastremap.unique(array, return_counts=True)
        drop.update(int(i) for i, c in zip(ids, counts) if c < dust_threshold)
    if drop:
        array = fastremap.mask(array, list(drop))
    if selected is not None:
        array = fastremap.mask_except(array, list(selected))
    return chunk.with_array(array)
