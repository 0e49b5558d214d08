"""Local file helpers shared by the format modules: path templates, atomic and staged writes."""

from __future__ import annotations

import functools
import os
import shutil
import threading
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


# What libraries raise for a damaged, truncated or foreign file (h5py, numpy, tifffile, zarr's
# codecs): not bugs of ours, but data that cannot be read.
UNREADABLE = (OSError, ValueError, RuntimeError, EOFError, KeyError)


def reader(what: str):
    """Decorate a reader `fn(path, ...)`: a library error while reading becomes one line naming
    the file and what was expected (`what`, e.g. "HDF5 file"), never a traceback or data."""

    def decorate(fn):
        @functools.wraps(fn)
        def read(path, *args, **kwargs):
            try:
                return fn(path, *args, **kwargs)
            except ChunkflowError:
                raise
            except UNREADABLE as err:
                reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
                raise ChunkflowError(f"{path}: unreadable {what} ({reason})") from err

        return read

    return decorate


def require_output_folder(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ChunkflowError(f"output folder {folder} does not exist (for {path})")


@contextmanager
def atomic_output(path: str, replace: bool = True):
    """Yield a temporary name next to `path`; rename it to `path` only if the block succeeds.

    A reader never sees a half-written file, and a failed write leaves nothing behind.
    Works for files and for folders (e.g. a zarr store). With `replace=False` an existing
    `path` (one another process created meanwhile) is left alone: FileExistsError.
    """
    require_output_folder(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if not replace:
            _place_new(tmp, path)
        else:
            if os.path.isdir(tmp) and os.path.isdir(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def _place_new(tmp: str, path: str) -> None:
    """Rename `tmp` to `path` unless `path` exists (FileExistsError)."""
    import errno

    if not os.path.isdir(tmp):
        _place(tmp, path, exclusive=True)
        return
    try:
        os.rename(tmp, path)  # a folder replaces only an empty folder
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise FileExistsError(path) from None
        raise


def put_files(path: str, files: list, desc: str = "write files") -> None:
    """Write [(name, bytes)] under a cloud path (file://, gs://, s3://), one put each.

    Local files go to temporary names first and are renamed together once all are written, so
    no reader sees half a file and a failure leaves none of them. `desc` labels the progress
    bar.
    """
    if path.startswith("file://"):
        folder = path[len("file://") :]
        os.makedirs(folder, exist_ok=True)
        with staged_writes():  # all of them, or none
            for name, data in progress(files, desc=desc, unit="file"):
                _write_staged(os.path.join(folder, name), lambda f, data=data: f.write(data))
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


# ---------------------------------------------------------------------------------------------
# Staged local writes: a write of many files (the blocks of a chunk, the fragments of its
# meshes) either lands whole or leaves what was there before.
#
# cloud-volume writes `file://` volumes through cloudfiles, and zarr through its LocalStore;
# both are made to write every file to a temporary name first. Outside `staged_writes()` each
# file is renamed into place at once (no reader ever sees half a file; SIGKILL leaves only a
# hidden temporary). Inside it, the renames wait until the block ends: a failure on the way (a
# full disk, a bad value, an interrupt) removes the temporaries and every previous file stays
# as it was. Object stores are atomic per object already.


class _Stage:
    """The files of one `staged_writes()` block: (temporary, final, exclusive)."""

    def __init__(self):
        self.files: list[tuple[str, str, bool]] = []
        self.aborted = False


_STAGE: _Stage | None = None
_STAGE_LOCK = threading.Lock()
_WRITING = [0]  # files being written right now, by any thread
COMPRESSION_SUFFIXES = ("", ".gz", ".br", ".zstd", ".xz", ".bz2")


def _temporary(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex[:12]}")


def _place(tmp: str, path: str, exclusive: bool = False) -> None:
    """Rename `tmp` to `path` (exclusive: fail if it exists, as zarr asks)."""
    if exclusive:
        try:
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
    else:
        os.replace(tmp, path)


def _write_staged(path: str, write, exclusive: bool = False) -> None:
    """Write a file through `write(f)` to a temporary name; rename it now, or when the
    enclosing `staged_writes()` block succeeds (never, if it failed meanwhile: a writer
    thread may finish after the block gave up)."""
    with _STAGE_LOCK:
        stage = _STAGE if not exclusive else None  # exclusive: the caller wants to know now
        _WRITING[0] += 1
    tmp = _temporary(path)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise ChunkflowError(f"{path}: cannot write ({err.strerror or err})") from err
        raise
    finally:
        with _STAGE_LOCK:
            _WRITING[0] -= 1
    if stage is not None:
        with _STAGE_LOCK:
            if not stage.aborted:
                stage.files.append((tmp, path, exclusive))
                return
        os.remove(tmp)
        return
    _place(tmp, path, exclusive)


def _cloudfiles_put_file(
    self, file_path, content, content_type, compress, cache_control=None, storage_class=None
):
    """cloudfiles' `FileInterface.put_file`, through a temporary name; a file left under
    another compression suffix (a stale `.gz` beside a new raw file) is removed, so a reader
    cannot find the old content first."""
    path = self.get_path_to_file(file_path)
    suffix = self.get_extension(compress)
    base = path[: -len(suffix)] if suffix and path.endswith(suffix) else path
    path = base + suffix
    if isinstance(content, str):
        content = content.encode("utf-8")

    def write(f):
        if hasattr(content, "read"):
            shutil.copyfileobj(content, f)
        else:
            f.write(content)

    _write_staged(path, write)
    for other in COMPRESSION_SUFFIXES:
        if other != suffix and os.path.exists(base + other):
            os.remove(base + other)


def _zarr_put(path, value, exclusive: bool = False) -> int:
    """zarr's LocalStore `_put`, staged like every other local write."""
    view = value.as_buffer_like()
    _write_staged(str(path), lambda f: f.write(view), exclusive)
    return len(memoryview(view).cast("B"))


_INSTALLED = False


def install_staged_writes() -> None:
    """Route cloudfiles' and zarr's local file writes through `_write_staged` (once)."""
    global _INSTALLED
    if _INSTALLED:
        return
    from cloudfiles.interfaces import FileInterface

    FileInterface.put_file = _cloudfiles_put_file
    try:
        from zarr.storage import _local
    except ImportError:  # another zarr layout: its own per-file atomic writes remain
        pass
    else:
        _local._put = _zarr_put
    _INSTALLED = True


def _quiesce(timeout: float = 5.0) -> None:
    """Wait until no file has been written for a moment (the writes of a failed block that
    its library's threads still finish are discarded meanwhile)."""
    import time

    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 3 and time.monotonic() < deadline:
        time.sleep(0.03)
        with _STAGE_LOCK:
            quiet = quiet + 1 if _WRITING[0] == 0 else 0


@contextmanager
def staged_writes():
    """Local files written inside the block appear together when it ends, or not at all.

    Nested blocks join the outermost one. Several threads may write inside it (cloud-volume's
    and zarr's writer threads); one staged block at a time per process.
    """
    global _STAGE
    install_staged_writes()
    with _STAGE_LOCK:
        if _STAGE is not None:
            stage = None
        else:
            stage = _STAGE = _Stage()
    if stage is None:
        yield
        return
    try:
        yield
    except BaseException:
        with _STAGE_LOCK:
            stage.aborted = True
        _quiesce()  # writer threads of the failed write may still be finishing files
        with _STAGE_LOCK:
            _STAGE = None
        for tmp, _, _ in stage.files:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    with _STAGE_LOCK:
        _STAGE = None
    for tmp, path, exclusive in stage.files:
        _place(tmp, path, exclusive)
