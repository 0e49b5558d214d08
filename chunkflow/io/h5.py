"""HDF5 chunks, compatible with files written by the original chunkflow.

Layout: the array in a dataset (`/main` by default), the geometry as root datasets
`/voxel_offset` and `/voxel_size` in (z, y, x) order and the layer type as root attribute
`layer_type`. Reading finds the array by name, or takes the only array in the file, and also
understands CREMI/gunpowder files (dataset attributes `resolution` and `offset` in world units).
"""

from __future__ import annotations

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io.files import atomic_output, require_file

METADATA = ("voxel_offset", "voxel_size", "unique_nonzeros")
COMPRESSIONS = ("none", "gzip", "lzf")


def _open(path: str):
    import h5py

    require_file(path, "an HDF5 file")
    if not h5py.is_hdf5(path):
        raise ChunkflowError(f"{path} is not an HDF5 file")
    return h5py.File(path, "r")


def _array_datasets(f) -> list[str]:
    import h5py

    names = []
    f.visititems(
        lambda n, o: (
            names.append("/" + n)
            if isinstance(o, h5py.Dataset) and n.split("/")[-1] not in METADATA
            else None
        )
    )
    return names


def read_h5(
    path: str,
    dataset: str | None = None,
    bbox: BoundingBox | None = None,
    voxel_offset=None,
    voxel_size=None,
    dtype=None,
    layer_type=None,
) -> Chunk:
    """Read a chunk (or the part inside `bbox`, global voxel coordinates) from an HDF5 file.

    `voxel_offset`, `voxel_size` and `layer_type` override what the file stores; `dtype` casts
    after reading (`Chunk.cast`: values are kept or it fails), keeping the stored layer type.
    """
    with _open(path) as f:
        if dataset is None:
            arrays = _array_datasets(f)
            if "/main" in arrays:
                dataset = "/main"
            elif len(arrays) == 1:
                dataset = arrays[0]
            else:
                names = ", ".join(arrays) or "none"
                raise ChunkflowError(f"{path}: which dataset? use --dataset-path, one of: {names}")
        if dataset not in f or not hasattr(f[dataset], "shape"):
            raise ChunkflowError(
                f"{path}: no dataset {dataset!r} (datasets: {', '.join(_array_datasets(f))})"
            )
        dset = f[dataset]
        if dset.ndim not in (3, 4):
            raise ChunkflowError(
                f"{path}:{dataset} has shape {dset.shape}; expected 3D (z,y,x) or 4D (c,z,y,x)"
            )
        # geometry: options, else the chunkflow layout, else CREMI/gunpowder dataset attributes
        # `resolution` and `offset` (world units)
        resolution = dset.attrs.get("resolution", (1, 1, 1))
        if voxel_size is None:
            voxel_size = f["voxel_size"][()] if "voxel_size" in f else resolution
        if voxel_offset is None:
            if "voxel_offset" in f:
                voxel_offset = f["voxel_offset"][()]
            else:
                voxel_offset = Cartesian(dset.attrs.get("offset", (0, 0, 0))) // resolution
        if layer_type is None and "layer_type" in f.attrs:
            layer_type = _text(f.attrs["layer_type"])
        voxel_offset = Cartesian(voxel_offset)
        data_bbox = BoundingBox.from_delta(voxel_offset, dset.shape[-3:])
        if bbox is None:
            bbox = data_bbox
        elif bbox.is_empty or not data_bbox.contains(bbox):
            raise ChunkflowError(
                f"{path}: cutout {bbox} is outside the data, which covers {data_bbox}"
            )
        local = bbox.shift(-voxel_offset).to_slices()
        array = dset[(Ellipsis, *local)] if bbox != data_bbox else dset[()]
    chunk = Chunk(array, bbox.start, voxel_size, layer_type)
    return chunk if dtype is None else chunk.cast(dtype)


def write_h5(
    chunk: Chunk,
    path: str,
    dataset: str = "main",
    compression: str = "none",
    block_size=None,
    with_offset: bool = True,
) -> None:
    """Write a chunk to an HDF5 file atomically (temporary name, then rename).

    compression: none (fastest), gzip or lzf. block_size: HDF5 chunk shape (z, y, x), or None for
    a contiguous dataset.
    """
    import h5py

    if compression not in COMPRESSIONS:
        raise ChunkflowError(f"compression {compression!r}: expected one of {COMPRESSIONS}")
    chunks = None
    if block_size is not None:
        chunks = tuple(min(b, s) for b, s in zip(block_size, chunk.shape[-3:]))
        chunks = (*chunk.shape[:-3], *chunks)
    elif compression != "none":
        chunks = True
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(
                dataset,
                data=np.asarray(chunk),
                chunks=chunks,
                compression=None if compression == "none" else compression,
            )
            f.create_dataset("voxel_size", data=np.asarray(chunk.voxel_size, dtype=np.int64))
            if with_offset:
                f.create_dataset(
                    "voxel_offset", data=np.asarray(chunk.voxel_offset, dtype=np.int64)
                )
            f.attrs["layer_type"] = chunk.layer_type.value


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
