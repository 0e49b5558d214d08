"""Local file helpers shared by the format modules: path templates and atomic writes."""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.progress import progress, progress_enabled


def task_path(path: str, bbox: BoundingBox | None, suffixes: tuple[str, ...]) -> str:
    """Resolve a file name that may name one file per task.

    - an existing file, or a name ending in one of `suffixes`: used as it is;
    - a folder (existing, or ending in `/`): `{folder}/{bbox}{suffix}`;
    - anything else is a prefix: `{prefix}{bbox}{suffix}`, as the original chunkflow did.
    """
    path = os.path.expanduser(path)
    if os.path.isfile(path) or (path.lower().endswith(suffixes) and not path.endswith("/")):
        return path
    if bbox is None:
        raise ChunkflowError(
            f"{path}: not a file ending in {'/'.join(suffixes)}, so its name is a folder or prefix "
            "completed by the bounding box, and there is none (set one with create-bbox)"
        )
    if path.endswith("/") or os.path.isdir(path):
        return os.path.join(path, f"{bbox.string}{suffixes[0]}")
    return f"{path}{bbox.string}{suffixes[0]}"


def require_file(path: str, what: str) -> None:
    """Raise a one-line error unless `path` is an existing, readable file."""
    if not os.path.exists(path):
        raise ChunkflowError(f"{path}: no such file (expected {what})")
    if os.path.isdir(path):
        raise ChunkflowError(f"{path} is a folder, expected {what}")
    if not os.access(path, os.R_OK):
        raise ChunkflowError(f"{path}: permission denied")


def require_output_folder(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ChunkflowError(f"output folder {folder} does not exist (for {path})")


@contextmanager
def atomic_output(path: str):
    """Yield a temporary name next to `path`; rename it to `path` only if the block succeeds.

    A reader never sees a half-written file, and a failed write leaves nothing behind.
    Works for files and for folders (e.g. a zarr store).
    """
    require_output_folder(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if os.path.isdir(tmp) and os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def put_files(path: str, files: list, desc: str = "write files") -> None:
    """Write [(name, bytes)] under a cloud path (file://, gs://, s3://), one put each.

    Local files go to a temporary name first and are renamed, so no reader sees half a file.
    `desc` labels the progress bar.
    """
    if path.startswith("file://"):
        folder = path[len("file://") :]
        os.makedirs(folder, exist_ok=True)
        for name, data in progress(files, desc=desc, unit="file"):
            target = os.path.join(folder, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with atomic_output(target) as tmp, open(tmp, "wb") as f:
                f.write(data)
        return
    from cloudfiles import CloudFiles

    CloudFiles(path).puts(
        files,
        compress=None,
        content_type="application/octet-stream",
        progress=progress_enabled() and len(files) > 1,
    )


def get_file(path: str, name: str, start: int | None = None, end: int | None = None):
    """The bytes of `name` under a cloud path (file://, gs://, s3://), or None if it is missing.

    `start`/`end` read only that byte range (half open).
    """
    from cloudfiles import CloudFiles

    if start is None and end is None:
        return CloudFiles(path).get(name)
    return CloudFiles(path).get({"path": name, "start": start, "end": end})


def list_files(path: str, prefix: str = "") -> list[str]:
    """Names (relative to `path`) of the files that start with `prefix`, not in subfolders."""
    from cloudfiles import CloudFiles

    try:
        return list(CloudFiles(path).list(prefix=prefix, flat=True))
    except FileNotFoundError:  # a local folder that does not exist (yet)
        return []
