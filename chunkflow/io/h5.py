"""HDF5 chunks, compatible with files written by the original chunkflow and by gunpowder.

Layout: the array in a dataset (`/main` by default). Its geometry is the dataset's own
attributes `resolution` and `offset` (world units, gunpowder/CREMI) when it has them, else the
root datasets `/voxel_size` and `/voxel_offset` (z, y, x) of the original chunkflow; the layer
type is the dataset's attribute `layer_type`, else the root's. Reading finds the array by name,
or takes the only array in the file. Stored geometry is checked (`chunkflow.io.metadata`).

Writing a dataset into an existing HDF5 file keeps its other datasets (gunpowder keeps raw,
labels and predictions in one file).
"""

from __future__ import annotations

import os

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io.files import atomic_output, reader, require_file
from chunkflow.io.metadata import (
    cutout_box,
    stored_array,
    stored_layer_type,
    stored_vector,
    voxel_offset_of,
)

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


@reader("HDF5 file")
def read_h5(
    path: str,
    dataset: str | None = None,
    bbox: BoundingBox | None = None,
    voxel_offset=None,
    voxel_size=None,
    dtype=None,
    layer_type=None,
    clip: bool = False,
) -> Chunk:
    """Read a chunk (or the part inside `bbox`, global voxel coordinates) from an HDF5 file.

    `voxel_offset`, `voxel_size` and `layer_type` override what the file stores; `dtype` casts
    after reading (`Chunk.cast`: values are kept or it fails), keeping the stored layer type.
    With `clip`, `bbox` may reach past the data: the part inside it is read.
    """
    with _open(path) as f:
        dset = _dataset(f, path, dataset)
        where = f"{path}:{dset.name}"
        if _text(dset.attrs.get("CLASS", "")) == "IMAGE":
            raise ChunkflowError(
                f"{where} is a 2D picture (HDF5 image class); expected a 3D (z, y, x) or 4D "
                "(c, z, y, x) volume"
            )
        stored_array(where, dset.shape, dset.dtype)
        if voxel_size is None or voxel_offset is None:  # what the options leave to the file
            stored_size, stored_offset = _geometry(f, dset, path, where)
            voxel_size = stored_size if voxel_size is None else voxel_size
            voxel_offset = stored_offset if voxel_offset is None else voxel_offset
        voxel_offset = Cartesian(voxel_offset)
        if layer_type is None:
            if "layer_type" in dset.attrs:
                layer_type = stored_layer_type(where, dset.attrs["layer_type"])
            elif "layer_type" in f.attrs:
                layer_type = stored_layer_type(path, f.attrs["layer_type"])
        data_bbox = BoundingBox.from_delta(voxel_offset, dset.shape[-3:])
        bbox = cutout_box(path, bbox, data_bbox, clip)
        local = bbox.shift(-voxel_offset).to_slices()
        array = dset[(Ellipsis, *local)] if bbox != data_bbox else dset[()]
    chunk = Chunk(array, bbox.start, voxel_size, layer_type)
    return chunk if dtype is None else chunk.cast(dtype)


def h5_bounds(path: str, dataset: str | None = None) -> BoundingBox:
    """The box (voxels) a dataset covers (`read_h5` chooses it alike), from its metadata only."""
    with _open(path) as f:
        dset = _dataset(f, path, dataset)
        _, offset = _geometry(f, dset, path, f"{path}:{dset.name}")
        return BoundingBox.from_delta(offset, dset.shape[-3:])


def _dataset(f, path: str, dataset: str | None):
    """The dataset `dataset`; without one /main, else the only array in the file."""
    if dataset is None:
        arrays = _array_datasets(f)
        if "/main" in arrays:
            dataset = "/main"
        elif len(arrays) == 1:
            dataset = arrays[0]
        else:
            names = ", ".join(arrays) or "none"
            raise ParameterError(f"{path}: which dataset? use `dataset`, one of: {names}")
    if dataset not in f or not hasattr(f[dataset], "shape"):
        raise ChunkflowError(
            f"{path}: no dataset {dataset!r} (datasets: {', '.join(_array_datasets(f))})"
        )
    return f[dataset]


def _geometry(f, dset, path: str, where: str) -> tuple[Cartesian, Cartesian]:
    """(voxel size, voxel offset) a dataset stores: its own attributes, else the root's."""
    attrs = dset.attrs
    if "resolution" in attrs or "offset" in attrs:  # gunpowder/CREMI, world units
        size = stored_vector(where, "the resolution", attrs.get("resolution", (1, 1, 1)), True)
        return size, voxel_offset_of(where, attrs.get("offset", (0, 0, 0)), size)
    size, offset = (1, 1, 1), (0, 0, 0)
    if "voxel_size" in f:
        size = stored_vector(path, "/voxel_size", _value(f["voxel_size"]), positive=True)
    if "voxel_offset" in f:
        offset = stored_vector(path, "/voxel_offset", _value(f["voxel_offset"]))
    return Cartesian(size), Cartesian(offset)


def _value(node):
    """What a dataset holds; a group stands for itself (and is refused as a value)."""
    return node[()] if hasattr(node, "shape") else node


def write_h5(
    chunk: Chunk,
    path: str,
    dataset: str = "main",
    compression: str = "none",
    block_size=None,
    with_offset: bool = True,
) -> None:
    """Write a chunk as `dataset` of an HDF5 file, atomically (temporary name, then rename).

    An existing HDF5 file keeps its other datasets: they are copied into the temporary file
    next to the new one, and a dataset of the same name is replaced. The dataset carries its
    geometry as attributes `resolution`, `offset` (world units, gunpowder's) and `layer_type`;
    the root `/voxel_size`, `/voxel_offset` and `layer_type` of the original layout are written
    in a new file and with the dataset `main`, and otherwise kept.

    compression: none (fastest), gzip or lzf. block_size: HDF5 chunk shape (z, y, x), or None for
    a contiguous dataset. Without `with_offset` no offset is stored (it reads as 0).
    """
    import h5py

    if compression not in COMPRESSIONS:
        raise ChunkflowError(f"compression {compression!r}: expected one of {COMPRESSIONS}")
    name = "/" + dataset.strip("/")
    if name == "/" or name.split("/")[-1] in METADATA:
        raise ChunkflowError(f"{path}: {dataset!r} cannot name a dataset; expected e.g. main")
    chunks = None
    if block_size is not None:
        chunks = tuple(min(b, s) for b, s in zip(block_size, chunk.shape[-3:]))
        chunks = (*chunk.shape[:-3], *chunks)
    elif compression != "none":
        chunks = True
    voxel_size = np.asarray(chunk.voxel_size, dtype=np.int64)
    voxel_offset = np.asarray(chunk.voxel_offset, dtype=np.int64)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            root = True
            if os.path.isfile(path) and h5py.is_hdf5(path):
                root = name == "/main"
                with h5py.File(path, "r") as old:
                    _copy_others(old, f, name, path, root)
            dset = f.create_dataset(
                name,
                data=np.asarray(chunk),
                chunks=chunks,
                compression=None if compression == "none" else compression,
            )
            dset.attrs["resolution"] = voxel_size
            if with_offset:
                dset.attrs["offset"] = voxel_offset * voxel_size
            dset.attrs["layer_type"] = chunk.layer_type.value
            if root:
                f.create_dataset("voxel_size", data=voxel_size)
                if with_offset:
                    f.create_dataset("voxel_offset", data=voxel_offset)
                f.attrs["layer_type"] = chunk.layer_type.value


def _copy_others(old, new, name: str, path: str, root: bool) -> None:
    """Copy every dataset and group of `old` but `name` into `new` (the root geometry too,
    unless `root`: then it is written anew)."""
    import h5py

    parts = name.strip("/").split("/")
    for k in range(1, len(parts) + 1):
        prefix = "/" + "/".join(parts[:k])
        node = old.get(prefix)
        if node is None:
            break
        if k < len(parts) and not isinstance(node, h5py.Group):
            raise ChunkflowError(f"{path}: {prefix} is a dataset, so {name} cannot be written")
        if k == len(parts) and not isinstance(node, h5py.Dataset):
            raise ChunkflowError(f"{path}: {name} is a group; expected a dataset name")
    skip = {name} | ({f"/{m}" for m in METADATA} if root else set())
    for key, value in old.attrs.items():
        if not (root and key == "layer_type"):
            new.attrs[key] = value

    def copy(member: str, node) -> None:
        full = "/" + member
        if full in skip:
            return
        if isinstance(node, h5py.Group):
            group = new.require_group(full)
            for key, value in node.attrs.items():
                group.attrs[key] = value
            return
        parent, _, base = full.rpartition("/")
        old.copy(node, new.require_group(parent) if parent else new, name=base)

    old.visititems(copy)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
