"""zarr (formats 2 and 3), OME-Zarr (0.4 and 0.5) and N5 chunks.

Geometry, read in this order of precedence:

- OME-Zarr: the `coordinateTransformations` (scale = voxel size, translation = world offset of
  the first voxel) of the chosen multiscale level, converted to nanometers from the axes' units
  (`chunkflow.io.ome`);
- gunpowder's attributes: `resolution` (voxel size) and `offset` (world coordinates of the first
  voxel, i.e. voxel offset × voxel size), both (z, y, x) and world units;
- N5: `resolution` (or `pixelResolution`) and `offset`, both (x, y, z) as N5 tools write them.

What the store does not say must be given (`voxel_size`, `voxel_offset`): a reader never
assumes a voxel size of 1 or an offset of 0.

Writing puts gunpowder's attributes, `units` and the axis names (zarr 3 `dimension_names`,
zarr 2 `_ARRAY_DIMENSIONS`) on every new array, so that gunpowder and funlib read it; with
`ome` the dataset is an OME-Zarr multiscale image (0.4 on zarr 2, 0.5 on zarr 3) whose level 0
is the array. Writing a chunk into a dataset that exists puts it at its place (the dataset must
cover the chunk, with the same dtype and channels); otherwise a new dataset is created for the
chunk. Remote stores (`s3://`, `gs://`, `http(s)://`) are read through zarr's `ObjectStore`
(obstore), and `s3://` and `gs://` written through it.

What a failed or concurrent write leaves:

- a new store or dataset appears whole or not at all: locally it is built under a temporary
  name and renamed; in an object store its chunks go first (every block, zeros too, so that
  objects a failed run left under the same keys are overwritten), then the metadata of its
  arrays, and last the one object that makes it visible (`zarr.json`, `.zgroup` or `.zarray`
  of the new node), put only if absent;
- a write into an existing array: locally every block of the chunk lands, or none; in an object
  store each block is one atomic put, so a failed run leaves some blocks new and some as they
  were (run the task again), and never touches metadata.

Levels added to an OME-Zarr image by downsampling: `chunkflow.io.ome_levels`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from chunkflow.chunk import Chunk, Grid, check_same_grid
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io.files import atomic_output, reader, require_output_folder, staged_writes
from chunkflow.io.metadata import (
    cutout_box,
    stored_array,
    stored_layer_type,
    stored_vector,
    voxel_offset_of,
)
from chunkflow.io.n5 import is_n5, n5_attributes, open_n5
from chunkflow.io.object_store import is_remote, object_store
from chunkflow.io.ome import find_multiscale, ome_geometry, ome_multiscale

__all__ = [
    "OpenedArray",
    "open_array",
    "read_zarr",
    "require_writable",
    "write_into",
    "write_zarr",
    "zarr_bounds",
    "zarr_store",
]


@dataclass
class OpenedArray:
    """An opened zarr or N5 array, where it is (for errors) and the geometry its store states
    (None where it states none); `open_array` makes one."""

    array: object
    where: str
    voxel_offset: Cartesian | None
    voxel_size: Cartesian | None
    n5: bool = False

    def read(self, slices) -> np.ndarray:
        """The voxels at `slices` ((c,) z, y, x order, N5 too) as a numpy array."""
        if self.n5:  # N5 dimensions are (x, y, z[, c]): numpy's are the reverse
            return np.asarray(self.array.T[slices].read().result())
        return np.asarray(self.array[slices])

    @property
    def shape(self):
        """The array's shape in (c,) z, y, x order (N5's x, y, z reversed)."""
        return tuple(self.array.shape[::-1] if self.n5 else self.array.shape)


def zarr_store(store: str, mode: str = "r"):
    """A local path, or zarr's ObjectStore over `s3://`, `gs://` (`http(s)://`: read only)."""
    if not is_remote(store):
        if not os.path.exists(store):
            raise ChunkflowError(f"{store}: no such zarr store")
        return store
    from zarr.storage import ObjectStore

    if mode != "r":
        require_writable(store)
    return ObjectStore(object_store(store), read_only=mode == "r")


def require_writable(store: str) -> None:
    """Refuse a store chunkflow cannot write: `http(s)://` ones are read only."""
    if store.startswith(("http://", "https://")):
        raise ChunkflowError(f"{store}: http(s) stores are read only; write to s3:// or gs://")


def open_array(
    store: str, dataset: str | None, level: int | None = None, mode: str = "r"
) -> OpenedArray:
    """The array `dataset` of a zarr or N5 `store` (local or remote), with its stored geometry.

    `dataset` may name an array, an OME-Zarr image (then `level` picks its level, default 0)
    or a group holding one array; None is the store's root. `mode` "r+" opens it for
    `write_into` (N5 and `http(s)://` stores are read only).
    """
    if is_n5(store, dataset):
        if mode != "r":
            raise ChunkflowError(f"{store}: N5 is read only here; write zarr instead")
        return OpenedArray(*open_n5(store, dataset), n5=True)
    import zarr

    zstore = zarr_store(store, mode)
    try:
        node = zarr.open(store=zstore, mode=mode, path=dataset or "")
    except Exception as err:
        raise ChunkflowError(f"{store}: cannot open zarr {dataset or 'store'} ({err})") from None
    where = f"{store}/{dataset}" if dataset else store
    if isinstance(node, zarr.Group):
        multiscale = find_multiscale(where, node.attrs)
        if multiscale is not None:
            datasets = multiscale.get("datasets") or []
            level = level or 0
            if not 0 <= level < len(datasets):
                raise ChunkflowError(
                    f"{where}: no level {level} in the OME-Zarr image (it has {len(datasets)})"
                )
            path = datasets[level].get("path")
            array = node[path]
            offset, size = ome_geometry(where, multiscale, level, array.ndim)
            return OpenedArray(array, f"{where}/{path}", offset, size)
        names = sorted(node.array_keys())
        if len(names) != 1:
            raise ParameterError(
                f"{store}: which dataset? use `dataset`, one of: {', '.join(names) or 'none'}"
            )
        node = node[names[0]]
        where = f"{where}/{names[0]}"
        dataset = f"{dataset}/{names[0]}" if dataset else names[0]
    if level:
        raise ChunkflowError(f"{where}: an array, not an OME-Zarr image: it has no levels")
    # an array inside an OME-Zarr image (`-d image/0`) takes its geometry from the image
    if dataset:
        parent, _, name = dataset.strip("/").rpartition("/")
        try:
            group = zarr.open_group(store=zstore, mode="r", path=parent)
            multiscale = find_multiscale(where, group.attrs)
        except Exception:
            multiscale = None
        paths = [d.get("path") for d in (multiscale or {}).get("datasets", [])]
        if name in paths:
            offset, size = ome_geometry(where, multiscale, paths.index(name), node.ndim)
            return OpenedArray(node, where, offset, size)
    offset, size = _gunpowder_geometry(where, dict(node.attrs))
    return OpenedArray(node, where, offset, size)


def zarr_bounds(store: str, dataset: str | None = None) -> BoundingBox:
    """The box (voxels) a zarr or N5 array covers, from its metadata only (offset 0 where the
    store states none)."""
    source = open_array(store, dataset)
    offset = source.voxel_offset if source.voxel_offset is not None else Cartesian(0, 0, 0)
    return BoundingBox.from_delta(offset, source.shape[-3:])


def _gunpowder_geometry(where, attrs) -> tuple[Cartesian | None, Cartesian | None]:
    size = attrs.get("resolution")
    if size is not None:
        size = stored_vector(where, "the resolution", size, True)
    offset = attrs.get("offset")
    if offset is not None:
        if size is None:
            raise ParameterError(f"{where}: an offset but no resolution; give `voxel_size` (z y x)")
        offset = voxel_offset_of(where, offset, size)
    return offset, size


@reader("zarr store")
def read_zarr(
    store: str,
    dataset: str | None = None,
    bbox: BoundingBox | None = None,
    dtype=None,
    layer_type=None,
    level: int | None = None,
    voxel_offset=None,
    voxel_size=None,
    clip: bool = False,
) -> Chunk:
    """Read a chunk (a cutout `bbox` in global voxels, else everything).

    `voxel_offset` and `voxel_size` override what the store says; one it does not say must
    be given. `level` picks an OME-Zarr multiscale level (default 0). With `clip`, `bbox` may
    reach past the data: the part inside it is read.
    """
    source = open_array(store, dataset, level)
    where = source.where
    stored_array(
        where, source.shape, source.array.dtype.numpy_dtype if source.n5 else source.array.dtype
    )
    voxel_offset = Cartesian(voxel_offset) if voxel_offset is not None else source.voxel_offset
    voxel_size = Cartesian(voxel_size) if voxel_size is not None else source.voxel_size
    missing = [
        flag
        for flag, value in (("-x/--voxel-size", voxel_size), ("-v/--voxel-offset", voxel_offset))
        if value is None
    ]
    if missing:
        raise ChunkflowError(
            f"{where}: the store does not say its {' and '.join(m.split('--')[1] for m in missing)}"
            f"; give {' and '.join(missing)} (z y x)"
        )
    data_bbox = BoundingBox.from_delta(voxel_offset, source.shape[-3:])
    bbox = cutout_box(store, bbox, data_bbox, clip)
    slices = bbox.shift(-voxel_offset).to_slices()
    data = source.read((Ellipsis, *slices))
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if layer_type is None:
        attrs = n5_attributes(where) if source.n5 else source.array.attrs
        layer_type = stored_layer_type(where, attrs.get("layer_type"))
    return Chunk(data, bbox.start, voxel_size, layer_type)


def write_zarr(
    chunk: Chunk,
    store: str,
    dataset: str | None = None,
    block_size=None,
    name: str = "chunk",
    zarr_format: int | None = None,
    ome: bool = False,
) -> None:
    """Write `chunk` into an existing dataset, or create one holding exactly the chunk.

    An existing dataset must have the chunk's voxel size and cover it; `name` names the chunk
    in errors. A new dataset is zarr `zarr_format` (default: the store's, else 3); with `ome`,
    an OME-Zarr image (0.4 on zarr 2, 0.5 on zarr 3) whose level 0 holds the chunk.
    """
    import zarr

    if zarr_format not in (None, 2, 3):
        raise ChunkflowError(f"{store}: zarr format {zarr_format}; expected 2 or 3")
    if is_remote(store):
        _write_remote(chunk, store, dataset, block_size, name, zarr_format, ome)
        return
    if os.path.exists(store) and is_n5(store):
        raise ChunkflowError(f"{store}: N5 is read only here; write zarr instead")
    if dataset and os.path.exists(store):
        group = zarr.open_group(store, mode="a")
        if dataset in group:
            write_into(chunk, open_array(store, dataset, mode="r+"), name)
            return
        _create(chunk, group, dataset, block_size, zarr_format or group.metadata.zarr_format, ome)
        return
    if not dataset and os.path.exists(store):
        write_into(chunk, open_array(store, None, mode="r+"), name)
        return
    require_output_folder(store)
    zarr_format = zarr_format or 3
    try:
        with atomic_output(store, replace=False) as tmp:
            if dataset:
                group = zarr.open_group(tmp, mode="w", zarr_format=zarr_format)
                _create(chunk, group, dataset, block_size, zarr_format, ome)
            elif ome:
                group = zarr.open_group(tmp, mode="w", zarr_format=zarr_format)
                _create(chunk, group, "", block_size, zarr_format, ome)
            else:
                _create(chunk, None, tmp, block_size, zarr_format, ome)
    except FileExistsError:  # another process created the store meanwhile: write into it
        write_zarr(chunk, store, dataset, block_size, name, zarr_format, ome)


METADATA = ("zarr.json", ".zarray", ".zgroup", ".zattrs")


def _write_remote(chunk, store, dataset, block_size, name, zarr_format, ome) -> None:
    """`write_zarr` into an object store (see the module's notes for what a failure leaves)."""
    require_writable(store)
    if store.rstrip("/").endswith(".n5"):
        raise ChunkflowError(f"{store}: N5 is read only here; write zarr instead")
    obj = object_store(store)
    dataset = (dataset or "").strip("/")
    root = _node_format(store, obj, "")
    if root is not None and dataset and _node_format(store, obj, dataset) is None:
        if root[1] != "group":
            raise ParameterError(f"{store}: an array, not a group: it holds no `dataset`")
        _publish(chunk, store, obj, dataset, block_size, zarr_format or root[0], ome)
    elif root is not None:
        write_into(chunk, open_array(store, dataset or None, mode="r+"), name)
    else:
        _publish(chunk, store, obj, dataset, block_size, zarr_format or 3, ome)


def _node_format(store: str, obj, path: str) -> tuple[int, str] | None:
    """(zarr format, "group" or "array") of the node at `path` of an object store, or None."""
    import obstore

    for key, found in (
        ("zarr.json", None),
        (".zgroup", (2, "group")),
        (".zarray", (2, "array")),
    ):
        try:
            if found is None:
                document = json.loads(bytes(obstore.get(obj, _key(path, key)).bytes()))
                return 3, document.get("node_type", "array")
            obstore.head(obj, _key(path, key))
            return found
        except FileNotFoundError:  # obstore's NotFoundError is one too
            continue
        except (ValueError, AttributeError):
            raise ChunkflowError(f"{store}: {_key(path, key)} is no zarr metadata") from None
        except Exception as err:
            raise ChunkflowError(f"{store}: cannot read {_key(path, key)} ({err})") from None
    return None


def _key(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _publish(chunk, store, obj, dataset, block_size, zarr_format, ome) -> None:
    """Create a new array (or OME image) `dataset` in an object store: built in memory, then its
    chunks put, its metadata deepest first (groups above it only if missing), and the object
    that makes it a node last, only if absent."""
    from concurrent.futures import ThreadPoolExecutor

    import obstore
    import zarr
    from obstore.exceptions import AlreadyExistsError
    from zarr.storage import MemoryStore

    objects: dict = {}
    memory = MemoryStore(store_dict=objects)
    if dataset or ome:
        group = zarr.open_group(memory, mode="w", zarr_format=zarr_format)
        _create(chunk, group, dataset, block_size, zarr_format, ome, every_block=True)
    else:
        _create(chunk, None, memory, block_size, zarr_format, ome, every_block=True)
    last = _key(dataset, "zarr.json" if zarr_format == 3 else ".zgroup" if ome else ".zarray")
    chunks = [k for k in objects if k.rpartition("/")[2] not in METADATA]
    metadata = [k for k in objects if k.rpartition("/")[2] in METADATA and k != last]
    # deepest first; in a folder, .zattrs before the .zarray/.zgroup that makes it a node
    metadata.sort(key=lambda k: (-k.count("/"), not k.endswith(".zattrs")))

    def put(key, mode="overwrite"):
        obstore.put(obj, key, objects[key].to_bytes(), mode=mode)

    where = f"{store}/{dataset}" if dataset else store
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, chunks))
        for key in metadata:
            folder = key.rpartition("/")[0]
            if not dataset or folder == dataset or folder.startswith(f"{dataset}/"):
                put(key)
            else:  # a group above the new node: made if missing, else left as it is
                try:
                    put(key, "create")
                except AlreadyExistsError:
                    pass
        put(last, "create")
    except AlreadyExistsError:
        if bytes(obstore.get(obj, last).bytes()) != objects[last].to_bytes():
            raise ChunkflowError(
                f"{where}: another process created it meanwhile, differently; its blocks may "
                "now hold this chunk's data: write the chunk into it again, or remove it"
            ) from None
    except Exception as err:
        from chunkflow.redact import redact

        reason = redact(" ".join(str(err).split()))[:200]
        raise ChunkflowError(f"{where}: cannot write ({reason})") from None


def _create(
    chunk: Chunk, group, name: str, block_size, zarr_format: int, ome: bool, every_block=False
) -> None:
    """A new array (level 0 of a new OME image with `ome`) holding `chunk`; `every_block`
    stores blocks of zeros too."""
    import zarr

    shape = chunk.shape
    blocks = None
    if block_size is not None:
        blocks = (*shape[:-3], *(min(b, s) for b, s in zip(block_size, shape[-3:])))
    axes = (["c"] if chunk.ndim == 4 else []) + ["z", "y", "x"]
    attributes = {
        "resolution": list(chunk.voxel_size),
        "offset": list(chunk.voxel_offset * chunk.voxel_size),
        "units": ["nm"] * 3,
        "layer_type": chunk.layer_type.value,
    }
    kwargs = dict(shape=shape, dtype=chunk.dtype, chunks=blocks or "auto", zarr_format=zarr_format)
    if zarr_format == 3:
        kwargs["dimension_names"] = axes
    else:
        attributes["_ARRAY_DIMENSIONS"] = axes
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/" if ome else "."}
    if ome:
        image = group.require_group(name) if name else group
        multiscale = ome_multiscale(chunk, os.path.basename(name.rstrip("/")) or "image")
        if zarr_format == 3:
            image.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
        else:
            image.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
        group, name = image, "0"
    kwargs["attributes"] = attributes
    if group is None:
        array = zarr.create_array(store=name, **kwargs)
    else:
        del kwargs["zarr_format"]
        array = group.create_array(name, **kwargs)
    if every_block:
        array = array.with_config({"write_empty_chunks": True})
    array[...] = np.asarray(chunk)


def write_into(chunk: Chunk, source: OpenedArray, name: str = "chunk") -> None:
    """Write `chunk` at its place in an array opened with `open_array(..., mode="r+")`.

    The array must state its geometry and cover the chunk on the chunk's grid, with the same
    dtype and channels; `name` names the chunk in errors. Locally every block lands or none.
    """
    array, where = source.array, source.where
    if source.voxel_size is None or source.voxel_offset is None:
        raise ChunkflowError(
            f"{where}: the dataset does not say its voxel size and offset, so {name} has no place "
            "in it; write a new dataset"
        )
    voxel_offset, voxel_size = source.voxel_offset, source.voxel_size
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
