"""zarr (formats 2 and 3), OME-Zarr (0.4 and 0.5) and N5 chunks.

Geometry, read in this order of precedence:

- OME-Zarr: the `coordinateTransformations` (scale = voxel size, translation = world offset of
  the first voxel) of the chosen multiscale level, converted to nanometers from the axes' units;
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
  were (run the task again), and never touches metadata;
- a level added to an OME-Zarr image is an array whose metadata exists before the multiscale
  lists it; its blocks read as zeros (the fill value) until tasks write them, like a scale added
  to a precomputed `info`. The read-modify-write of the multiscale is serialized: locally by an
  exclusive `flock` on a lock file inside level 0's folder (which zarr never lists), the new
  document put by rename; in an object store by a put conditional on the ETag it was read with
  (`If-Match`), retried on conflict. Concurrent processes adding levels lose none.
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
from chunkflow.io.metadata import stored_array, stored_layer_type, stored_vector, voxel_offset_of
from chunkflow.io.n5 import is_n5, n5_attributes, open_n5
from chunkflow.io.object_store import is_remote, object_store

UNIT = "nanometer"
# OME-Zarr length units, in nanometers (our world unit)
NANOMETERS = {
    "angstrom": 0.1,
    "nanometer": 1.0,
    "nm": 1.0,
    "micrometer": 1e3,
    "micron": 1e3,
    "millimeter": 1e6,
    "centimeter": 1e7,
    "meter": 1e9,
}
OME_VERSIONS = {"0.4": 2, "0.5": 3}  # the zarr format each OME-Zarr version lives on


@dataclass
class _Source:
    """An opened array, where it is (for errors) and the geometry its store states (or None)."""

    array: object
    where: str
    voxel_offset: Cartesian | None
    voxel_size: Cartesian | None
    n5: bool = False

    def read(self, slices) -> np.ndarray:
        if self.n5:  # N5 dimensions are (x, y, z[, c]): numpy's are the reverse
            return np.asarray(self.array.T[slices].read().result())
        return np.asarray(self.array[slices])

    @property
    def shape(self):
        return tuple(self.array.shape[::-1] if self.n5 else self.array.shape)


def _zarr_store(store: str, mode: str = "r"):
    """A local path, or zarr's ObjectStore over `s3://`, `gs://` (`http(s)://`: read only)."""
    if not is_remote(store):
        if not os.path.exists(store):
            raise ChunkflowError(f"{store}: no such zarr store")
        return store
    from zarr.storage import ObjectStore

    if mode != "r":
        _writable(store)
    return ObjectStore(object_store(store), read_only=mode == "r")


def _writable(store: str) -> None:
    if store.startswith(("http://", "https://")):
        raise ChunkflowError(f"{store}: http(s) stores are read only; write to s3:// or gs://")


def _open(store: str, dataset: str | None, level: int | None = None, mode: str = "r") -> _Source:
    if is_n5(store, dataset):
        if mode != "r":
            raise ChunkflowError(f"{store}: N5 is read only here; write zarr instead")
        return _Source(*open_n5(store, dataset), n5=True)
    import zarr

    zstore = _zarr_store(store, mode)
    try:
        node = zarr.open(store=zstore, mode=mode, path=dataset or "")
    except Exception as err:
        raise ChunkflowError(f"{store}: cannot open zarr {dataset or 'store'} ({err})") from None
    where = f"{store}/{dataset}" if dataset else store
    if isinstance(node, zarr.Group):
        multiscale = _multiscale(where, node.attrs)
        if multiscale is not None:
            datasets = multiscale.get("datasets") or []
            level = level or 0
            if not 0 <= level < len(datasets):
                raise ChunkflowError(
                    f"{where}: no level {level} in the OME-Zarr image (it has {len(datasets)})"
                )
            path = datasets[level].get("path")
            array = node[path]
            offset, size = _ome_geometry(where, multiscale, level, array.ndim)
            return _Source(array, f"{where}/{path}", offset, size)
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
            multiscale = _multiscale(where, group.attrs)
        except Exception:
            multiscale = None
        paths = [d.get("path") for d in (multiscale or {}).get("datasets", [])]
        if name in paths:
            offset, size = _ome_geometry(where, multiscale, paths.index(name), node.ndim)
            return _Source(node, where, offset, size)
    offset, size = _gunpowder_geometry(where, dict(node.attrs))
    return _Source(node, where, offset, size)


def _multiscale(where: str, attrs) -> dict | None:
    """The first OME-Zarr multiscale of a group (0.4: `multiscales`, 0.5: `ome.multiscales`)."""
    attrs = dict(attrs)
    found = attrs.get("ome", {}).get("multiscales") if isinstance(attrs.get("ome"), dict) else None
    found = found or attrs.get("multiscales")
    if found is None:
        return None
    if not isinstance(found, list) or not found or not isinstance(found[0], dict):
        raise ChunkflowError(f"{where}: OME-Zarr multiscales is {found!r:.60}; expected a list")
    return found[0]


def _ome_geometry(where, multiscale, level, ndim) -> tuple[Cartesian, Cartesian]:
    """(voxel offset, voxel size in nm) of one level: its transforms, then the multiscale's."""
    axes = multiscale.get("axes") or []
    names = [a.get("name") if isinstance(a, dict) else a for a in axes]
    if len(names) != ndim or names[-3:] != ["z", "y", "x"]:
        raise ChunkflowError(
            f"{where}: OME-Zarr axes {names} for an array of {ndim} dimensions; expected "
            "(z, y, x) last, channels (c) first"
        )
    factors = []
    for axis in axes[-3:]:
        unit = axis.get("unit") if isinstance(axis, dict) else None
        if unit is not None and unit not in NANOMETERS:
            raise ChunkflowError(
                f"{where}: OME-Zarr axis {axis.get('name')} has unit {unit!r}; expected a length "
                f"({', '.join(NANOMETERS)})"
            )
        factors.append(NANOMETERS.get(unit, 1.0))
    scale, translation = np.ones(ndim), np.zeros(ndim)
    transforms = list(multiscale["datasets"][level].get("coordinateTransformations") or [])
    transforms += list(multiscale.get("coordinateTransformations") or [])
    for transform in transforms:
        kind = transform.get("type")
        values = np.asarray(transform.get(kind, np.nan), dtype=float)
        if kind not in ("scale", "translation") or values.shape != (ndim,):
            raise ChunkflowError(
                f"{where}: OME-Zarr transform {transform!r:.80} of level {level}; expected a "
                f"scale or translation of {ndim} numbers"
            )
        if kind == "scale":
            scale, translation = scale * values, translation * values
        else:
            translation = translation + values
    voxel_size = _whole(where, "voxel size", scale[-3:] * factors)
    offset = _whole(where, "offset", translation[-3:] * factors)
    size = stored_vector(where, f"the voxel size (nm) of level {level}", voxel_size, True)
    return voxel_offset_of(where, offset, size), size


def _whole(where, what, values):
    rounded = np.round(values)
    if not np.allclose(values, rounded, rtol=1e-9, atol=1e-6):
        raise ParameterError(
            f"{where}: OME-Zarr {what} {[float(v) for v in values]} nm is not a whole number of "
            "nanometers; give `voxel_size` and `voxel_offset`"
        )
    return [int(v) for v in rounded]


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
    source = _open(store, dataset, level)
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
    if bbox is None:
        bbox = data_bbox
    elif clip and not bbox.intersect(data_bbox).is_empty:
        bbox = bbox.intersect(data_bbox)
    if bbox.is_empty or not data_bbox.contains(bbox):
        raise ChunkflowError(
            f"{store}: cutout {bbox} is outside the data, which covers {data_bbox}"
        )
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
            _write_into(chunk, _open(store, dataset, mode="r+"), name)
            return
        _create(chunk, group, dataset, block_size, zarr_format or group.metadata.zarr_format, ome)
        return
    if not dataset and os.path.exists(store):
        _write_into(chunk, _open(store, None, mode="r+"), name)
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
    _writable(store)
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
        _write_into(chunk, _open(store, dataset or None, mode="r+"), name)
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


def ome_multiscale(chunk: Chunk, name: str = "image") -> dict:
    """The OME-Zarr multiscale of one level `0` holding `chunk` (axes c?, z, y, x in nm)."""
    channels = chunk.ndim == 4
    axes = [{"name": "c", "type": "channel"}] if channels else []
    axes += [{"name": axis, "type": "space", "unit": UNIT} for axis in "zyx"]
    lead = [1.0] if channels else []
    return {
        "name": name,
        "axes": axes,
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [
                    {"type": "scale", "scale": lead + [float(v) for v in chunk.voxel_size]},
                    {
                        "type": "translation",
                        "translation": [0.0] * len(lead)
                        + [float(v) for v in chunk.voxel_offset * chunk.voxel_size],
                    },
                ],
            }
        ],
    }


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


def _write_into(chunk: Chunk, source: _Source, name: str = "chunk") -> None:
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


# OME-Zarr pyramids ---------------------------------------------------------------------------
def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def is_ome_image(path: str) -> bool:
    """Whether `path` (a folder, a `file://` one, or an `s3://`/`gs://` prefix) is an OME-Zarr
    image (a group with multiscales)."""
    path = _local(path)
    if not is_remote(path) and not os.path.isdir(path):
        return False
    if is_remote(path) and not _has_zarr_attributes(path):
        return False
    try:
        found = _attributes(path, object_store(path) if is_remote(path) else None)
        return found is not None and _multiscale(path, found[2]) is not None
    except ChunkflowError:
        return False


def _has_zarr_attributes(path: str) -> bool:
    """Whether a remote path may hold group attributes. Asked first through cloudfiles: a
    precomputed volume (the usual case) is told apart with the credentials its own writes use,
    without obstore looking for credentials of its own (seconds on a machine outside the
    cloud); where cloudfiles cannot ask, maybe."""
    from cloudfiles import CloudFiles

    try:
        return any(CloudFiles(path).exists(["zarr.json", ".zattrs"]).values())
    except Exception:
        return True


def _attributes(path: str, obj=None) -> tuple[str, dict, dict, dict | None] | None:
    """(key, document, its attributes, version) of a group's attributes: zarr 3 `zarr.json` or
    zarr 2 `.zattrs`, read now; the version (ETag) only from an object store `obj`."""
    for key in ("zarr.json", ".zattrs"):
        try:
            if obj is None:
                with open(os.path.join(path, key), "rb") as f:
                    raw, version = f.read(), None
            else:
                import obstore

                result = obstore.get(obj, key)
                raw = bytes(result.bytes())
                version = {k: result.meta[k] for k in ("e_tag", "version") if result.meta[k]}
        except FileNotFoundError:
            continue
        except Exception as err:
            raise ChunkflowError(f"{path}: cannot read {key} ({err})") from None
        try:
            document = json.loads(raw)
        except ValueError:
            raise ChunkflowError(f"{path}: {key} is not JSON") from None
        if not isinstance(document, dict):
            raise ChunkflowError(f"{path}: {key} is not a JSON object")
        attrs = document.setdefault("attributes", {}) if key == "zarr.json" else document
        return key, document, attrs, version
    return None


def update_group_attributes(path: str, change, lock_folder: str) -> None:
    """Read-modify-write a group's attributes: `change(attrs)` edits them in place and returns
    whether it changed anything. Serialized between processes: locally by an exclusive flock
    on `lock_folder/.chunkflow.lock` (the new document renamed into place), in an object store
    by a put conditional on the version read (If-Match), tried again on a conflict."""
    if not is_remote(path):
        import fcntl

        lock = os.path.join(path, lock_folder, ".chunkflow.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            key, document, attrs, _ = _attributes(path)
            if change(attrs):
                target = os.path.join(path, key)
                tmp = f"{os.path.dirname(target)}/.{key}.tmp-{os.getpid()}"
                with open(tmp, "w") as f:
                    json.dump(document, f, indent=2)
                os.replace(tmp, target)
        finally:
            os.close(fd)  # releases the lock
        return
    import random
    import time

    import obstore
    from obstore.exceptions import PreconditionError

    obj = object_store(path)
    for attempt in range(50):
        key, document, attrs, version = _attributes(path, obj)
        if not change(attrs):
            return
        if not version:
            raise ChunkflowError(
                f"{path}: the store gives {key} no ETag or version, so it cannot be updated "
                "safely while other processes may update it"
            )
        try:
            obstore.put(obj, key, json.dumps(document, indent=2).encode(), mode=version)
            return
        except PreconditionError:  # another process changed it since: read it again
            time.sleep(random.uniform(0, 0.05 * (1 + attempt)))
        except Exception as err:
            raise ChunkflowError(f"{path}: cannot write {key} ({err})") from None
    raise ChunkflowError(f"{path}: its metadata kept changing under 50 tries; try again")


def write_ome_levels(path: str, levels: list[tuple[int, Chunk]], name: str = "chunk") -> None:
    """Write downsampled chunks into levels of the OME-Zarr image at `path`.

    `levels` pairs a level number with the chunk for it. A level the image lacks is created
    (`"{level}"`, covering the level below, with the chunk's voxel size as its scale) and added
    to the multiscale, which must already list every level below it. Several processes may add
    levels at once (see the module's notes).
    """
    path = _local(path)
    if is_remote(path):
        _writable(path)
    obj = object_store(path) if is_remote(path) else None
    for level, chunk in levels:
        found = _attributes(path, obj)
        multiscale = _multiscale(path, found[2]) if found else None
        if multiscale is None:
            raise ChunkflowError(f"{path}: not an OME-Zarr image (no multiscales)")
        count = len(multiscale["datasets"])
        if level > count:
            raise ChunkflowError(
                f"{path}: cannot add level {level}: the image has levels 0-{count - 1}"
            )
        if level == count:
            _add_level(path, level, chunk, multiscale["datasets"][0]["path"])
        _write_into(chunk, _open(path, None, level, mode="r+"), name)


def _add_level(path: str, level: int, chunk: Chunk, first: str) -> None:
    """Create level `level` (array `"{level}"`) for `chunk`'s voxel size and list it."""
    import zarr

    below = _open(path, None, level - 1)
    factor = chunk.voxel_size // below.voxel_size
    if tuple(factor * below.voxel_size) != tuple(chunk.voxel_size):
        raise ChunkflowError(
            f"{path}: cannot add a level of voxel size {tuple(chunk.voxel_size)}: not a whole "
            f"multiple of the level below's {tuple(below.voxel_size)}"
        )
    bbox = BoundingBox.from_delta(below.voxel_offset, below.shape[-3:])
    start = bbox.start // factor
    stop = -(-bbox.stop // factor)
    level_chunk = Chunk(
        np.zeros((*chunk.shape[:-3], *(stop - start)), chunk.dtype),
        start,
        chunk.voxel_size,
        chunk.layer_type,
    )
    entry = ome_multiscale(level_chunk)["datasets"][0]
    entry["path"] = str(level)
    group = zarr.open_group(store=_zarr_store(path, "r+"), mode="r+")
    try:  # two processes adding the same level make the same array
        _create_empty(level_chunk, group, entry["path"], tuple(below.array.chunks[-3:]))
    except Exception as err:
        if entry["path"] not in group:
            raise ChunkflowError(f"{path}: cannot add level {entry['path']} ({err})") from None

    def add(attrs) -> bool:
        datasets = _multiscale(path, attrs)["datasets"]
        if level < len(datasets):  # another process listed it meanwhile
            return False
        if level > len(datasets):
            raise ChunkflowError(f"{path}: level {level - 1} went missing while adding {level}")
        datasets.append(entry)
        return True

    update_group_attributes(path, add, first)


def _create_empty(chunk: Chunk, group, name: str, blocks) -> None:
    """A new array for `chunk`'s bbox in an OME image group, without writing its voxels."""
    zarr_format = group.metadata.zarr_format
    axes = (["c"] if chunk.ndim == 4 else []) + ["z", "y", "x"]
    kwargs = dict(
        shape=chunk.shape,
        dtype=chunk.dtype,
        chunks=(*chunk.shape[:-3], *(min(b, s) for b, s in zip(blocks, chunk.shape[-3:]))),
        attributes={"layer_type": chunk.layer_type.value},
    )
    if zarr_format == 3:
        kwargs["dimension_names"] = axes
    else:
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    group.create_array(name, **kwargs)
