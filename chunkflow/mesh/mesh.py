"""Meshing segmentation chunks with zmesh and writing neuroglancer legacy meshes.

Coordinates: vertices are in world units (nm), x, y, z order as neuroglancer expects:
(voxel index + chunk voxel offset) × voxel size, voxel centred (as igneous meshes).

Files, for a chunk with world bounding box B (z0-z1_y0-y1_x0-x1, voxel offset × voxel size):

- precomputed: fragment `{id}:0:{B}` (neuroglancer legacy binary mesh), manifest `{id}:0` =
  {"fragments": [...]} written by `mesh-manifest` (or `mesh --manifest` when one chunk holds
  whole objects); a volume also gets "mesh": "mesh" in its info and `mesh/info`
  {"@type": "neuroglancer_legacy_mesh"}.
- ply / obj (folder output only): `{id}_{B}.ply` / `.obj`.
- multires (volume output only): one `{B}.frags` per chunk, merged into sharded
  multi-resolution meshes by `mesh-merge-sharded` (see chunkflow/mesh/multires.py).

Neighbouring chunks must overlap by one voxel so their surfaces meet: cut tasks with a stride
one voxel smaller than the chunk, e.g. `generate-tasks --chunk-size 65 257 257 --stride 64 256
256`.
"""

from __future__ import annotations

import json
import logging
import os
import re

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io.files import put_files
from chunkflow.progress import progress

logger = logging.getLogger(__name__)

FORMATS = ("precomputed", "ply", "obj", "multires")
FRAGMENT = re.compile(r"^(\d+):0:(.+)$")


def world_bbox(chunk: Chunk, voxel_size) -> BoundingBox:
    voxel_size = Cartesian(voxel_size)
    return BoundingBox(chunk.voxel_offset * voxel_size, chunk.voxel_stop * voxel_size)


def mesh_chunk(
    seg: Chunk,
    voxel_size,
    simplification_factor: int = 100,
    max_simplification_error: float = 8.0,
    dust_threshold: int = 0,
    ids=None,
    skip_ids=None,
    max_slab_voxels: int = 2**25,
    processes: int | None = None,
) -> dict:
    """Mesh every object of a segmentation chunk; returns {id: zmesh.Mesh} in world units.

    Large chunks are meshed in z slabs of at most `max_slab_voxels` voxels (one voxel of
    overlap) to bound memory; each object's pieces are joined into one mesh. Simplification,
    most of the time, runs in `processes` forked workers (default: up to 2 CPUs).
    """
    import fastremap
    import zmesh

    array = np.asarray(seg)
    if array.ndim != 3 or array.dtype.kind not in "iu" or not seg.is_segmentation:
        raise ChunkflowError(
            f"meshing needs a 3D integer segmentation, got a {seg.layer_type.value} chunk of "
            f"{array.dtype} and shape {array.shape}"
        )
    if ids is not None:
        present = set(int(i) for i in fastremap.unique(array))
        missing = sorted(set(ids) - present)
        if missing:
            raise ParameterError(
                f"`ids` {','.join(map(str, missing))} are not in the chunk {seg.bbox}"
            )
        array = fastremap.mask_except(array, list(ids))
    if skip_ids:
        array = fastremap.mask(array, list(skip_ids))
    if dust_threshold > 0:
        labels, counts = fastremap.unique(array, return_counts=True)
        small = [int(i) for i, c in zip(labels, counts) if c < dust_threshold and i != 0]
        if small:
            array = fastremap.mask(array, small)
    voxel_size = Cartesian(voxel_size)
    # marching cubes holds every raw mesh of its input at once: mesh slabs of bounded size along
    # z, overlapping by one voxel plane like neighbouring chunks, and join each object's pieces
    plane = array.shape[1] * array.shape[2]
    depth = max(1, max_slab_voxels // max(plane, 1))
    pieces: dict[int, list] = {}
    slabs = range(0, max(array.shape[0] - 1, 1), depth)
    for z0 in progress(slabs, desc="mesh", unit="slab"):
        slab = array[z0 : z0 + depth + 1]
        mesher = zmesh.Mesher(voxel_size.xyz)
        mesher.mesh(slab.T)  # an (x, y, z) view: vertices come out in x, y, z
        offset = np.asarray(((seg.voxel_offset + (z0, 0, 0)) * voxel_size).xyz, np.float32)
        settings = (simplification_factor, max_simplification_error)
        for label, vertices, faces in _simplified(mesher, settings, processes):
            mesh = zmesh.Mesh(vertices + offset, faces, None)
            pieces.setdefault(label, []).append(mesh)
        mesher.clear()
    return {
        label: parts[0] if len(parts) == 1 else zmesh.Mesh.concatenate(*parts).consolidate()
        for label, parts in pieces.items()
    }


_MESHER: dict = {}


def _simplify_block(labels):
    """Simplify some objects of the mesher inherited from the parent (a forked worker)."""
    mesher, (factor, error) = _MESHER["mesher"], _MESHER["settings"]
    out = []
    for label in labels:
        mesh = mesher.get(
            int(label), normals=False, reduction_factor=factor, max_error=error, voxel_centered=True
        )
        mesher.erase(int(label))
        out.append((int(label), mesh.vertices, mesh.faces))
    return out


def _simplified(mesher, settings, processes=None):
    """(label, vertices, faces) of every object, simplified. zmesh holds the GIL while it
    simplifies, so forked processes share the work; results differ slightly from a serial run
    (zmesh's simplifier carries state from one object to the next) but stay within max_error.

    Only a single-threaded process forks: a fork copies the locks other threads hold, and a
    child that waits on one hangs for good (in a queue worker, while the lease heartbeat keeps
    its task from every other worker). With other threads running it simplifies serially; an
    idle tqdm monitor is stopped first (see _stop_tqdm_monitors)."""
    import multiprocessing
    import threading

    labels = [int(label) for label in mesher.ids()]
    if processes is None:
        processes = min(2, os.cpu_count() or 1)
    forkable = "fork" in multiprocessing.get_all_start_methods()
    if processes > 1 and len(labels) >= 32 and forkable:
        _stop_tqdm_monitors()
    alone = threading.active_count() == 1
    if processes <= 1 or len(labels) < 32 or not forkable or not alone:
        _MESHER.update(mesher=mesher, settings=settings)
        try:
            return _simplify_block(labels)
        finally:
            _MESHER.clear()
    blocks = [labels[k :: processes * 8] for k in range(processes * 8)]
    _MESHER.update(mesher=mesher, settings=settings)
    try:
        pool = multiprocessing.get_context("fork").Pool(processes, initializer=_worker_signals)
        try:
            items = [item for part in pool.imap_unordered(_simplify_block, blocks) for item in part]
        except BaseException:
            pool.terminate()
            pool.join()
            raise
        pool.close()  # the workers exit on their own
        pool.join()
        return items
    finally:
        _MESHER.clear()


def _worker_signals() -> None:
    """A forked worker takes SIGTERM the default way: it inherits the handlers of its parent
    (the CLI turns SIGTERM into an exception, which a pool worker would print)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop_tqdm_monitors() -> None:
    """Stop tqdm's monitor threads. tqdm starts one with its first progress bar, even a disabled
    one, and cloudfiles makes such bars on every read: after a cutout that thread alone kept
    the simplification serial. It only tunes the refresh of slow bars, holds no lock while it
    waits, and tqdm starts a new one with its next bar."""
    import threading

    for thread in threading.enumerate():
        if type(thread).__name__ == "TMonitor" and type(thread).__module__ == "tqdm._monitor":
            thread.exit()


def encode(mesh, fmt: str) -> bytes:
    if fmt == "precomputed":
        return mesh.to_precomputed()
    if fmt == "ply":
        return mesh.to_ply()
    if fmt == "obj":
        return mesh.to_obj()
    raise ParameterError(f"`fmt` {fmt!r}: expected one of {', '.join(FORMATS)}")


def fragment_name(label: int, bbox: BoundingBox, fmt: str) -> str:
    if fmt == "precomputed":
        return f"{label}:0:{bbox.string}"
    return f"{label}_{bbox.string}.{fmt}"


# where meshes go ------------------------------------------------------------------------------
class MeshTarget:
    """A precomputed segmentation volume (its mesh dir) or a plain folder."""

    def __init__(self, path: str, fmt: str, mip: int, voxel_size=None):
        from chunkflow.io.precomputed import open_volume, volume_exists

        if fmt not in FORMATS:
            raise ParameterError(f"`fmt` {fmt!r}: expected one of {', '.join(FORMATS)}")
        self.format = fmt
        if volume_exists(path):
            vol = open_volume(path, mip)
            if vol.layer_type != "segmentation":
                raise ChunkflowError(
                    f"{path} is a {vol.layer_type} volume; meshes need a segmentation volume"
                )
            if fmt not in ("precomputed", "multires"):
                raise ParameterError(
                    f"{path} is a precomputed volume: use `fmt` "
                    "precomputed or multires, or a folder for ply/obj"
                )
            self.volume = path
            self.path = f"{path.rstrip('/')}/{vol.info.get('mesh') or 'mesh'}"
            self.voxel_size = Cartesian.from_xyz(vol.resolution)
            self._info = vol
        else:
            if fmt == "multires":
                raise ChunkflowError(
                    f"{path}: multires meshes go into a precomputed segmentation volume "
                    "(create it first, e.g. with save or create-info)"
                )
            if not path.startswith("file://"):
                raise ChunkflowError(
                    f"{path}: no segmentation info there (create the volume "
                    "first, e.g. with save or create-info)"
                )
            if voxel_size is None:
                raise ParameterError(f"{path} is a folder, not a volume: give `voxel_size`")
            folder = path[len("file://") :]
            parent = os.path.dirname(folder.rstrip("/")) or "."
            if not os.path.isdir(folder) and not os.path.isdir(parent):
                raise ChunkflowError(f"output folder {parent} does not exist (for {folder})")
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as err:
                raise ChunkflowError(
                    f"output folder {folder} is not writable ({err.strerror})"
                ) from None
            if not os.access(folder, os.W_OK):
                raise ChunkflowError(f"output folder {folder} is not writable")
            self.volume = None
            self.path = path
            self.voxel_size = None
            self._info = None
        self.mip = mip
        self.voxel_size_given = voxel_size is not None
        if voxel_size is not None:
            self.voxel_size = Cartesian(voxel_size)

    def check_chunk(self, chunk: Chunk, name: str = "chunk") -> Chunk:
        """`chunk`, refused (`name` names it) unless it is at the volume's voxel size; a chunk
        without one (1, 1, 1), or a target given the voxel size to mesh with, is not checked."""
        if self.voxel_size_given or self.volume is None or chunk.voxel_size == (1, 1, 1):
            return chunk
        from chunkflow.chunk import Grid, check_same_grid

        where = f"the volume {self.volume} at mip {self.mip}"
        check_same_grid((name, chunk), (where, Grid(self.voxel_size)), boxes=None)
        return chunk

    def prepare(self) -> None:
        """Add the mesh entries to the volume info (once, before the first fragments)."""
        if self._info is None:
            return
        vol = self._info
        if not vol.info.get("mesh"):
            vol.info["mesh"] = "mesh"
            vol.commit_info()
        if self.format != "multires":  # mesh-merge-sharded writes the multilod info
            legacy = {"@type": "neuroglancer_legacy_mesh"}
            put_files(self.path, [("info", json.dumps(legacy).encode())])
        self._info = None

    def write(self, meshes: dict, bbox: BoundingBox, manifest: bool = False) -> list[str]:
        self.prepare()
        if self.format == "multires":
            from chunkflow.mesh.multires import write_fragments

            return [write_fragments(self.path, meshes, bbox)]
        names = []
        files = []
        for label, mesh in meshes.items():
            name = fragment_name(label, bbox, self.format)
            files.append((name, encode(mesh, self.format)))
            if manifest and self.format == "precomputed":
                files.append((f"{label}:0", json.dumps({"fragments": [name]}).encode()))
            names.append(name)
        put_files(self.path, files, desc="write meshes")
        return names


# manifests -------------------------------------------------------------------------------------
def write_manifests(volume_path: str, prefix: str | None = None) -> int:
    """Write `{id}:0` manifests for every object (with an id starting with `prefix`) from the
    fragments in the volume's mesh dir. Returns the number of manifests written."""
    from cloudfiles import CloudFiles

    from chunkflow.io.precomputed import open_volume

    vol = open_volume(volume_path, 0)
    if vol.layer_type != "segmentation":
        raise ChunkflowError(f"{volume_path} is a {vol.layer_type} volume, not a segmentation")
    mesh_path = f"{volume_path.rstrip('/')}/{vol.info.get('mesh') or 'mesh'}"
    fragments: dict[int, list[str]] = {}
    for name in CloudFiles(mesh_path).list(prefix=prefix or ""):
        match = FRAGMENT.match(os.path.basename(name))
        if match:
            fragments.setdefault(int(match.group(1)), []).append(os.path.basename(name))
    put_files(
        mesh_path,
        [
            (f"{label}:0", json.dumps({"fragments": sorted(names)}).encode())
            for label, names in sorted(fragments.items())
        ],
        desc="write manifests",
    )
    logger.info(
        "mesh-manifest: %d manifests for ids starting with %r in %s",
        len(fragments),
        prefix or "",
        mesh_path,
    )
    return len(fragments)
