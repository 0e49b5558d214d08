"""Levels of an OME-Zarr image: the downsampled levels a pyramid adds, written by many
processes at once, locally or in an object store (`s3://`, `gs://`).

A level added to an OME-Zarr image is an array whose metadata exists before the multiscale
lists it; its blocks read as zeros (the fill value) until tasks write them, like a scale added
to a precomputed `info`. The read-modify-write of the multiscale is serialized: locally by an
exclusive `flock` on a lock file inside level 0's folder (which zarr never lists), the new
document put by rename; in an object store by a put conditional on the ETag it was read with
(`If-Match`), retried on conflict. Concurrent processes adding levels lose none.
"""

from __future__ import annotations

import json
import os

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.object_store import is_remote, object_store
from chunkflow.io.ome import find_multiscale, ome_multiscale
from chunkflow.io.zarr import open_array, require_writable, write_into, zarr_store

__all__ = ["is_ome_image", "update_group_attributes", "write_ome_levels"]


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
        return found is not None and find_multiscale(path, found[2]) is not None
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
        require_writable(path)
    obj = object_store(path) if is_remote(path) else None
    for level, chunk in levels:
        found = _attributes(path, obj)
        multiscale = find_multiscale(path, found[2]) if found else None
        if multiscale is None:
            raise ChunkflowError(f"{path}: not an OME-Zarr image (no multiscales)")
        count = len(multiscale["datasets"])
        if level > count:
            raise ChunkflowError(
                f"{path}: cannot add level {level}: the image has levels 0-{count - 1}"
            )
        if level == count:
            _add_level(path, level, chunk, multiscale["datasets"][0]["path"])
        write_into(chunk, open_array(path, None, level, mode="r+"), name)


def _add_level(path: str, level: int, chunk: Chunk, first: str) -> None:
    """Create level `level` (array `"{level}"`) for `chunk`'s voxel size and list it."""
    import zarr

    below = open_array(path, None, level - 1)
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
    group = zarr.open_group(store=zarr_store(path, "r+"), mode="r+")
    try:  # two processes adding the same level make the same array
        _create_empty(level_chunk, group, entry["path"], tuple(below.array.chunks[-3:]))
    except Exception as err:
        if entry["path"] not in group:
            raise ChunkflowError(f"{path}: cannot add level {entry['path']} ({err})") from None

    def add(attrs) -> bool:
        datasets = find_multiscale(path, attrs)["datasets"]
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
