"""Random boxes in stored data: where a box and the context it needs fit, how much of it a
mask covers, and the bounds of an HDF5 dataset or zarr/N5 array (gunpowder's RandomLocation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.context import Grow
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian

__all__ = ["random_box", "stored_bounds", "read_box", "foreground"]

H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def random_box(
    bounds: BoundingBox,
    size: Iterable[int],
    rng: np.random.Generator,
    grow: Grow | None = None,
    accept: Callable[[BoundingBox], bool] | None = None,
    tries: int = 100,
) -> BoundingBox:
    """A box of `size` at a uniformly random place where `grow(box)` lies inside `bounds`
    (without `grow`: the box itself).

    `accept` may reject a box (a mask with too little foreground): then another is drawn, at
    most `tries` in all; the error names the bounds, the size and the context.
    """
    size = Cartesian(size)
    grow = grow or (lambda box: box)
    if min(size) <= 0:
        raise ChunkflowError(f"the box size {tuple(size)} must be positive")
    probe = BoundingBox.from_delta(bounds.start, size)
    grown = grow(probe)
    neg, pos = probe.start - grown.start, grown.stop - probe.stop
    low, high = bounds.start + neg, bounds.stop - pos - size
    if any(h < lo for lo, h in zip(low, high)):
        need = f"-{','.join(map(str, neg))} +{','.join(map(str, pos))}"
        raise ChunkflowError(
            f"no box of size {','.join(map(str, size))} with its context ({need}) fits in {bounds}"
        )
    for _ in range(max(1, tries)):
        start = Cartesian(*(int(rng.integers(lo, h + 1)) for lo, h in zip(low, high)))
        box = BoundingBox.from_delta(start, size)
        if accept is None or accept(box):
            return box
    raise ChunkflowError(
        f"no box of size {','.join(map(str, size))} in {bounds} passed the mask in {tries} tries"
    )


def stored_bounds(path: str, dataset: str | None = None) -> BoundingBox:
    """The box (voxels) an HDF5 dataset or a zarr/N5 array covers, from its metadata only."""
    if str(path).endswith(H5_SUFFIXES):
        from chunkflow.io.h5 import h5_bounds

        return h5_bounds(path, dataset)
    from chunkflow.io.zarr import zarr_bounds

    return zarr_bounds(path, dataset)


def read_box(path: str, dataset: str | None, box: BoundingBox) -> Chunk:
    """The part of `box` inside an HDF5 dataset or a zarr/N5 array."""
    if str(path).endswith(H5_SUFFIXES):
        from chunkflow.io.h5 import read_h5

        return read_h5(path, dataset, box, clip=True)
    from chunkflow.io.zarr import read_zarr

    return read_zarr(path, dataset, box, clip=True)


def foreground(mask: Chunk, box: BoundingBox) -> float:
    """Fraction of the voxels of `box` where `mask` is nonzero (outside the mask counts 0)."""
    inside = mask.bbox.intersect(box)
    if inside.is_empty:
        return 0.0
    return float(np.count_nonzero(np.asarray(mask.crop(inside)))) / box.voxel_count
