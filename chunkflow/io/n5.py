"""N5 containers, read through tensorstore: arrays and their `resolution`/`offset` geometry,
both stored (x, y, z) as N5 tools write them. Local folders, `s3://` (at `--s3-endpoint` /
`AWS_ENDPOINT_URL_S3` when set), `gs://` and `http(s)://`; N5 is never written."""

from __future__ import annotations

import json
import os

from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import Cartesian
from chunkflow.io.metadata import stored_vector, voxel_offset_of
from chunkflow.io.object_store import is_remote, kvstore_spec


def is_n5(store: str, dataset: str | None = None) -> bool:
    """An N5 container: named `.n5`, or (local) with N5's `attributes.json` and no zarr
    metadata."""
    if store.rstrip("/").endswith(".n5"):
        return True
    if "://" in store or any(
        os.path.exists(os.path.join(store, m)) for m in ("zarr.json", ".zgroup", ".zarray")
    ):
        return False
    return any(
        os.path.isfile(os.path.join(store, folder, "attributes.json"))
        for folder in ("", (dataset or "").strip("/"))
    )


def open_n5(store: str, dataset: str | None):
    """(array, where, voxel offset, voxel size) of an N5 dataset, through tensorstore (zarr-python
    3 has no N5); geometry None where the attributes do not say."""
    try:
        import tensorstore as ts
    except ImportError:
        raise ChunkflowError(
            f"{store}: reading N5 needs tensorstore (pip install tensorstore)"
        ) from None
    store = store.rstrip("/")
    path = (dataset or "").strip("/")
    where = f"{store}/{path}" if path else store
    attrs = n5_attributes(where, missing_ok=is_remote(store) or os.path.isdir(where))
    if "dimensions" not in attrs:  # a group: its only dataset
        path = f"{path}/{_only_dataset(store, where)}".strip("/")
        where = f"{store}/{path}"
        attrs = n5_attributes(where)
    try:
        array = ts.open(
            {"driver": "n5", "kvstore": kvstore_spec(store), "path": path}, read=True
        ).result()
    except Exception as err:
        from chunkflow.redact import redact

        raise ChunkflowError(f"{where}: cannot open N5 dataset ({redact(str(err))})") from None
    size = attrs.get("resolution")
    if size is None and isinstance(attrs.get("pixelResolution"), dict):
        size = attrs["pixelResolution"].get("dimensions")
    if size is not None:
        size = stored_vector(where, "the resolution", size, True, axes="x, y, z")[::-1]
        size = Cartesian(*size)
    offset = attrs.get("offset")
    if offset is not None:
        if size is None:
            raise ParameterError(f"{where}: an offset but no resolution; give `voxel_size`")
        offset = voxel_offset_of(
            where, list(stored_vector(where, "the offset", offset))[::-1], size
        )
    return array, where, offset, size


def _only_dataset(store: str, where: str) -> str:
    """The name of a group's only dataset; N5 groups do not list their children, so a remote
    group (whose folders cannot be listed cheaply) needs the dataset named."""
    if is_remote(store):
        raise ParameterError(f"{where}: an N5 group; name the dataset with `dataset`")
    names = sorted(
        n
        for n in os.listdir(where)
        if "dimensions" in n5_attributes(os.path.join(where, n), missing_ok=True)
    )
    if len(names) != 1:
        raise ParameterError(
            f"{where}: which dataset? use `dataset`, one of: {', '.join(names) or 'none'}"
        )
    return names[0]


def n5_attributes(folder: str, missing_ok: bool = False) -> dict:
    """The `attributes.json` of an N5 group or dataset, local or remote."""
    if is_remote(folder):
        text = _read_remote(folder, "attributes.json")
    else:
        name = os.path.join(folder, "attributes.json")
        text = open(name).read() if os.path.isfile(name) else None
    if text is None:
        if missing_ok:
            return {}
        raise ChunkflowError(f"{folder}: no such N5 dataset (no attributes.json)")
    try:
        return json.loads(text)
    except ValueError as err:
        raise ChunkflowError(f"{folder}/attributes.json: not JSON ({err})") from None


def _read_remote(folder: str, key: str) -> str | None:
    import tensorstore as ts

    try:
        found = ts.KvStore.open(kvstore_spec(folder)).result().read(key).result()
    except Exception as err:
        from chunkflow.redact import redact

        raise ChunkflowError(f"{folder}/{key}: cannot read ({redact(str(err))})") from None
    return found.value.decode() if found.state == "value" else None
