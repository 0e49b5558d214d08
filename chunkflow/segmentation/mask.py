"""Masks read from a precomputed volume, usually at a coarser mip than the chunk."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import Cartesian


def read_mask(
    volume_path: str, bbox, chunk_mip: int, mask_mip: int, fill_missing: bool = False
) -> np.ndarray:
    """A boolean (z, y, x) mask covering `bbox` (voxels at `chunk_mip`), upsampled from
    `mask_mip` by repeating voxels."""
    from chunkflow.io.precomputed import open_volume, read_precomputed

    vol = open_volume(volume_path, 0)
    scales = vol.info["scales"]
    if not (0 <= chunk_mip < len(scales) and 0 <= mask_mip < len(scales)):
        raise ChunkflowError(
            f"{volume_path}: mips {chunk_mip} and {mask_mip} must both exist "
            f"(the volume has mips 0..{len(scales) - 1})"
        )
    fine = Cartesian.from_xyz(scales[chunk_mip]["resolution"])
    coarse = Cartesian.from_xyz(scales[mask_mip]["resolution"])
    if any(c % f for c, f in zip(coarse, fine)) or any(c < f for c, f in zip(coarse, fine)):
        raise ChunkflowError(
            f"{volume_path}: mask mip {mask_mip} ({tuple(coarse)}) is not a "
            f"multiple of the chunk mip {chunk_mip} ({tuple(fine)})"
        )
    factor = coarse // fine
    coarse_bbox = bbox.scale(factor, mode="grow")
    try:
        mask = read_precomputed(volume_path, coarse_bbox, mask_mip, fill_missing)
    except ChunkflowError as err:
        if "outside the volume" in str(err):
            raise ChunkflowError(
                f"the mask volume {volume_path} does not cover the chunk {bbox} "
                f"(mip {chunk_mip}): {err}"
            ) from None
        raise
    array = np.asarray(mask)
    if array.ndim == 4:
        array = array.any(axis=0)
    for axis, f in enumerate(factor):
        if f > 1:
            array = np.repeat(array, f, axis=axis)
    start = bbox.start - coarse_bbox.start * factor
    stop = start + bbox.shape
    return array[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]] != 0


def apply_mask(chunk: Chunk, mask: np.ndarray, inverse: bool = False) -> Chunk:
    """Zero the chunk where the mask is 0 (or, with `inverse`, where it is not)."""
    keep = ~mask if inverse else mask
    return chunk.with_array(np.where(keep, np.asarray(chunk), 0).astype(chunk.dtype, copy=False))


class MaskVolume:
    """A mask volume at `mask_mip` (default: `chunk_mip`) for chunks at `chunk_mip`: where it
    is 0 (or, inverted, where it is not) chunks are zeroed."""

    def __init__(
        self, path: str, chunk_mip: int, mask_mip: int | None = None, fill_missing: bool = False
    ):
        self.path = path
        self.chunk_mip = chunk_mip
        self.mask_mip = chunk_mip if mask_mip is None else mask_mip
        self.fill_missing = fill_missing

    def read(self, bbox) -> np.ndarray:
        """The boolean mask over `bbox` (voxels at `chunk_mip`)."""
        return read_mask(self.path, bbox, self.chunk_mip, self.mask_mip, self.fill_missing)

    def apply(
        self,
        chunks: Sequence[Chunk],
        inverse: bool = False,
        check_all_zero: bool = False,
        names: Sequence[str] | None = None,
    ) -> list[Chunk] | None:
        """`chunks` masked; with `check_all_zero`, None when the mask zeroes all of the first
        chunk. `names` name the chunks in errors: their voxel size must be the volume's at
        `chunk_mip`."""
        from chunkflow.chunk import check_same_grid
        from chunkflow.io.precomputed import volume_grid

        grid = volume_grid(self.path, self.chunk_mip)
        where = f"the mask volume {self.path} at mip {self.chunk_mip}"
        for name, chunk in zip(names or [f"chunk {k}" for k in range(len(chunks))], chunks):
            check_same_grid((name, chunk), (where, grid), boxes=None)
        first = chunks[0].bbox
        keep = self.read(first)
        if check_all_zero and not (~keep if inverse else keep).any():
            return None
        return [
            apply_mask(chunk, keep if chunk.bbox == first else self.read(chunk.bbox), inverse)
            for chunk in chunks
        ]
