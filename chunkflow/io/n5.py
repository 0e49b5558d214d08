"""N5 containers, read through tensorstore: arrays and their `resolution`/`offset` geometry,
both stored (x, y, z) as N5 tools write them. Local folders only; N5 is never written."""

from __future__ import annotations

import json
import os

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import Cartesian
from chunkflow.io.metadata import stored_vector, voxel_offset_of


def is_n5(store: str, dataset: str | None = None) -> bool:
    """An N5 container: named `.n5`, or with N5's `attributes.json` and no zarr metadata."""
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
    path = (dataset or "").strip("/")
    where = f"{store}/{path}" if path else store
    if "://" in store:
        raise ChunkflowError(f"{store}: N5 is read from local folders only")
    attrs = n5_attributes(where, missing_ok=os.path.isdir(where))
    if "dimensions" not in attrs:  # a group: its only dataset
        names = sorted(
            n
            for n in os.listdir(where)
            if "dimensions" in n5_attributes(os.path.join(where, n), missing_ok=True)
        )
        if len(names) != 1:
            raise ChunkflowError(
                f"{store}: which dataset? use --dataset, one of: {', '.join(names) or 'none'}"
            )
        path = f"{path}/{names[0]}".strip("/")
        where = f"{store}/{path}"
        attrs = n5_attributes(where)
    try:
        array = ts.open(
            {"driver": "n5", "kvstore": {"driver": "file", "path": store}, "path": path},
            read=True,
        ).result()
    except Exception as err:
        raise ChunkflowError(f"{where}: cannot open N5 dataset ({err})") from None
    size = attrs.get("resolution")
    if size is None and isinstance(attrs.get("pixelResolution"), dict):
        size = attrs["pixelResolution"].get("dimensions")
    if size is not None:
        size = stored_vector(where, "the resolution", size, True, axes="x, y, z")[::-1]
        size = Cartesian(*size)
    offset = attrs.get("offset")
    if offset is not None:
        if size is None:
            raise ChunkflowError(f"{where}: an offset but no resolution; give -x/--voxel-size")
        offset = voxel_offset_of(
            where, list(stored_vector(where, "the offset", offset))[::-1], size
        )
    return array, where, offset, size


def n5_attributes(folder: str, missing_ok: bool = False) -> dict:
    name = os.path.join(folder, "attributes.json")
    if not os.path.isfile(name):
        if missing_ok:
            return {}
        raise ChunkflowError(f"{folder}: no such N5 dataset (no attributes.json)")
    with open(name) as f:
        return json.load(f)
