"""zarr (format 3) chunks, with the attributes gunpowder reads.

An array carries `resolution` (voxel size) and `offset` (world coordinates of its first voxel,
i.e. voxel offset × voxel size), both in (z, y, x) order and world units, plus `layer_type`.
A store may be a single array or a group holding named datasets.

Writing a chunk into a dataset that exists puts it at its place (the dataset must cover the
chunk, with the same dtype and channels); otherwise a new dataset is created for the chunk.
"""

from __future__ import annotations

import os

import numpy as np

from chunkflow.chunk import Chunk, Grid, check_same_grid
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io.files import atomic_output, reader, require_output_folder, staged_writes
from chunkflow.io.metadata import stored_array, stored_layer_type, stored_vector, voxel_offset_of


def _open_array(store: str, dataset: str | None, mode: str = "r"):
    import zarr

    if not os.path.exists(store):
        raise ChunkflowError(f"{store}: no such zarr store")
    try:
        node = zarr.open(store, mode=mode, path=dataset) if dataset else zarr.open(store, mode=mode)
    except Exception as err:
        raise ChunkflowError(f"{store}: cannot open zarr {dataset or 'store'} ({err})") from None
    if isinstance(node, zarr.Group):
        names = sorted(node.array_keys())
        if len(names) != 1:
            raise ChunkflowError(
                f"{store}: which dataset? use --dataset, one of: {', '.join(names) or 'none'}"
            )
        node = node[names[0]]
    return node


def _geometry(array, where: str) -> tuple[Cartesian, Cartesian]:
    """(voxel offset, voxel size) from gunpowder's `offset` and `resolution` attributes."""
    attrs = dict(array.attrs)
    voxel_size = stored_vector(where, "the resolution", attrs.get("resolution", (1, 1, 1)), True)
    return voxel_offset_of(where, attrs.get("offset", (0, 0, 0)), voxel_size), voxel_size


def _where(store: str, array) -> str:
    return f"{store}/{array.path}" if getattr(array, "path", "") else store


@reader("zarr store")
def read_zarr(
    store: str,
    dataset: str | None = None,
    bbox: BoundingBox | None = None,
    dtype=None,
    layer_type=None,
) -> Chunk:
    array = _open_array(store, dataset)
    where = _where(store, array)
    stored_array(where, array.shape, array.dtype)
    voxel_offset, voxel_size = _geometry(array, where)
    data_bbox = BoundingBox.from_delta(voxel_offset, array.shape[-3:])
    if bbox is None:
        bbox = data_bbox
    elif bbox.is_empty or not data_bbox.contains(bbox):
        raise ChunkflowError(
            f"{store}: cutout {bbox} is outside the data, which covers {data_bbox}"
        )
    data = array[(Ellipsis, *bbox.shift(-voxel_offset).to_slices())]
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if layer_type is None:
        layer_type = stored_layer_type(where, array.attrs.get("layer_type"))
    return Chunk(data, bbox.start, voxel_size, layer_type)


def write_zarr(
    chunk: Chunk, store: str, dataset: str | None = None, block_size=None, name: str = "chunk"
) -> None:
    """Write `chunk` into an existing dataset, or create one holding exactly the chunk.

    An existing dataset must have the chunk's voxel size and cover it; `name` names the chunk
    in errors.
    """
    import zarr

    if dataset and os.path.exists(store):
        group = zarr.open_group(store, mode="a")
        if dataset in group:
            _write_into(chunk, group[dataset], f"{store}/{dataset}", name)
            return
        _create(chunk, group, dataset, block_size)
        return
    if not dataset and os.path.exists(store):
        _write_into(chunk, _open_array(store, None, mode="r+"), store, name)
        return
    require_output_folder(store)
    try:
        with atomic_output(store, replace=False) as tmp:
            if dataset:
                _create(chunk, zarr.open_group(tmp, mode="w"), dataset, block_size)
            else:
                _create(chunk, None, tmp, block_size)
    except FileExistsError:  # another process created the store meanwhile: write into it
        write_zarr(chunk, store, dataset, block_size, name)


def _create(chunk: Chunk, group, name: str, block_size) -> None:
    import zarr

    shape = chunk.shape
    blocks = None
    if block_size is not None:
        blocks = (*shape[:-3], *(min(b, s) for b, s in zip(block_size, shape[-3:])))
    attributes = {
        "resolution": list(chunk.voxel_size),
        "offset": list(chunk.voxel_offset * chunk.voxel_size),
        "layer_type": chunk.layer_type.value,
    }
    kwargs = dict(shape=shape, dtype=chunk.dtype, chunks=blocks or "auto", attributes=attributes)
    if group is None:
        array = zarr.create_array(store=name, **kwargs)
    else:
        array = group.create_array(name, **kwargs)
    array[...] = np.asarray(chunk)


def _write_into(chunk: Chunk, array, where: str, name: str = "chunk") -> None:
    voxel_offset, voxel_size = _geometry(array, where)
    data_bbox = BoundingBox.from_delta(voxel_offset, array.shape[-3:])
    if np.dtype(array.dtype) != chunk.dtype:
        raise ChunkflowError(
            f"{where}: chunk dtype {chunk.dtype} does not fit dataset dtype {array.dtype}"
        )
    if tuple(array.shape[:-3]) != tuple(chunk.shape[:-3]):
        raise ChunkflowError(
            f"{where}: chunk of shape {chunk.shape} does not fit dataset channels "
            f"{array.shape[:-3] or '(none)'}"
        )
    check_same_grid((name, chunk), (f"the dataset {where}", Grid(voxel_size, data_bbox)), "inside")
    # every block of the chunk lands, or none; blocks of zeros are written, not deleted, so
    # nothing changes before the end
    array = array.with_config({"write_empty_chunks": True})
    with staged_writes():
        array[(Ellipsis, *chunk.bbox.shift(-voxel_offset).to_slices())] = np.asarray(chunk)
