"""Writes into sharded precomputed scales.

cloud-volume writes a shard whole from the blocks it is given: a chunk covering part of a shard
would erase the rest. tensorstore reads the shard, merges the chunk in and writes the shard back
on commit, conditionally (a shard another writer changed meanwhile is read again), and a local
shard goes to a temporary name (`{shard}.__lock`) renamed into place.
"""

from __future__ import annotations

import contextlib

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io.files import staged_writes
from chunkflow.io.shards import partial_shards, shard_shape, shards_touched
from chunkflow.io.volume import cv_bounds, open_volume

TENSORSTORE_ENCODINGS = ("raw", "jpeg", "png", "compressed_segmentation")
_SHARD_TRANSACTION: list = []  # [transaction, made at the first sharded write] of the open block


def _tensorstore_kvstore(path: str) -> str | dict | None:
    """The tensorstore kvstore of a volume path, or None where it has none. tensorstore does
    not read the endpoint variables boto3 reads: an `s3://` path gets the endpoint here."""
    from chunkflow.aws import s3_endpoint

    if path.startswith("s3://") and s3_endpoint():
        bucket, _, key = path[len("s3://") :].partition("/")
        key = key.strip("/")
        return {
            "driver": "s3",
            "bucket": bucket,
            "path": key + "/" if key else "",
            "endpoint": s3_endpoint(),
        }
    if path.startswith(("file://", "gs://", "s3://")):
        return path.rstrip("/") + "/"
    return None


@contextlib.contextmanager
def sharded_writes():
    """Writes into sharded scales inside the block are committed together when it ends, or
    not at all if it fails (each shard file is replaced whole, one rename each)."""
    if _SHARD_TRANSACTION:  # nested: join the outer block
        yield
        return
    slot = [None]  # no tensorstore (nor its import) unless a sharded scale is written
    _SHARD_TRANSACTION.append(slot)
    try:
        yield
    except BaseException:
        if slot[0] is not None:
            slot[0].abort()
        raise
    finally:
        _SHARD_TRANSACTION.pop()
    if slot[0] is not None:
        _commit(slot[0], "sharded volume")


def _commit(txn, where: str) -> None:
    try:
        txn.commit_sync()
    except Exception as err:
        reason = " ".join(str(err).split())[:200]
        raise ChunkflowError(f"{where}: writing the shards failed ({reason})") from err


def shard_shapes(path: str) -> list:
    """The shard shape (z, y, x voxels) of every scale of a volume; None for an unsharded or
    hashed one."""
    shapes = []
    for scale in open_volume(path).info["scales"]:
        spec = scale.get("sharding")
        size = Cartesian.from_xyz(scale["size"])
        block = Cartesian.from_xyz(scale["chunk_sizes"][0])
        try:
            shapes.append(shard_shape(spec, size, block) if spec else None)
        except ChunkflowError:
            shapes.append(None)
    return shapes


def shard_aligned_region(path: str, mip: int, roi: BoundingBox, chunk_size, stride=None):
    """`roi` grown to the shard boundaries of the volume's sharded `mip` and clipped to its
    bounds, for tasks of whole shards: `chunk_size` (and `stride`) must be multiples of the
    shard shape, so each task writes its shards whole and no two tasks share one."""
    vol = open_volume(path, mip)
    spec = vol.meta.sharding(mip)
    if spec is None:
        raise ChunkflowError(
            f"{path}: mip {mip} is not sharded, so there are no shards to align to"
        )
    bounds = cv_bounds(vol)
    shape = shard_shape(spec, bounds.shape, Cartesian.from_xyz(vol.meta.chunk_size(mip)))
    for what, size in (("chunk size", chunk_size), ("stride", stride)):
        if size is not None and any(Cartesian(size) % shape):
            raise ChunkflowError(
                f"{path}: {what} {' '.join(map(str, size))} is not a multiple of the shard "
                f"shape {' '.join(map(str, shape))} (z y x) at mip {mip}"
            )
    grown = roi.shift(-bounds.start).snap_to_grid(shape, mode="grow").shift(bounds.start)
    return grown.intersect(bounds)


def write_sharded(vol, path: str, mip: int, chunk: Chunk) -> None:
    """Write `chunk` into a sharded scale without losing the rest of the shards it touches."""
    encoding = vol.meta.encoding(mip)
    if encoding in TENSORSTORE_ENCODINGS and _tensorstore_kvstore(path) is not None:
        _write_tensorstore(path, mip, chunk)
        return
    bounds = cv_bounds(vol)
    spec = vol.meta.sharding(mip)
    block = Cartesian.from_xyz(vol.meta.chunk_size(mip))
    why = (
        f"tensorstore cannot write encoding {encoding!r}"
        if encoding not in TENSORSTORE_ENCODINGS
        else f"tensorstore cannot write to {path.split('://')[0]}://"
    )
    try:
        shape = shard_shape(spec, bounds.shape, block)
    except ChunkflowError as err:  # hashed shards are scattered: only no shard at all is safe
        raise ChunkflowError(
            f"{path}: chunk {chunk.bbox} at mip {mip} cannot be merged into its shards ({err}) "
            f"and {why}"
        ) from None
    partial = partial_shards(chunk.bbox, bounds, shape)
    if partial:
        more = f" and {len(partial) - 1} more" if len(partial) > 1 else ""
        raise ChunkflowError(
            f"{path}: chunk {chunk.bbox} at mip {mip} covers part of shard {partial[0]}{more} "
            f"(z0-z1_y0-y1_x0-x1); writing it would erase the rest of the shard and {why}: "
            f"write whole shards of {' '.join(map(str, shape))} voxels (z y x)"
        )
    with staged_writes():  # cloud-volume writes one whole shard at a time
        for shard in shards_touched(chunk.bbox, bounds, shape):
            array = np.asarray(chunk.array[(..., *shard.shift(-chunk.bbox.start).to_slices())])
            # (x, y, z, c) even for one channel: the sharded path indexes a channel axis
            array = array.T[..., None] if array.ndim == 3 else np.transpose(array, (3, 2, 1, 0))
            (x0, y0, z0), (x1, y1, z1) = shard.start.xyz, shard.stop.xyz
            vol[x0:x1, y0:y1, z0:z1] = array


def _write_tensorstore(path: str, mip: int, chunk: Chunk) -> None:
    import tensorstore as ts

    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": _tensorstore_kvstore(path),
        "scale_index": mip,
    }
    array = np.asarray(chunk)
    array = array.T[..., None] if array.ndim == 3 else np.transpose(array, (3, 2, 1, 0))
    x0, y0, z0 = chunk.bbox.start.xyz
    x1, y1, z1 = chunk.bbox.stop.xyz
    own = not _SHARD_TRANSACTION
    if own:
        txn = ts.Transaction()
    else:
        slot = _SHARD_TRANSACTION[-1]
        if slot[0] is None:
            slot[0] = ts.Transaction()
        txn = slot[0]
    try:
        store = ts.open(spec, read=True, write=True, context=ts.Context()).result()
        store.with_transaction(txn)[x0:x1, y0:y1, z0:z1, :].write(array).result()
    except Exception as err:
        if own:
            txn.abort()
        reason = " ".join(str(err).split())[:200]
        raise ChunkflowError(
            f"{path}: cannot write chunk {chunk.bbox} into sharded mip {mip} ({reason})"
        ) from err
    if own:
        _commit(txn, f"{path}: chunk {chunk.bbox} at mip {mip}")
