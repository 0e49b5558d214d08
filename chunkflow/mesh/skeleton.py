"""Skeletons of segmentation chunks (kimimaro TEASAR), written as neuroglancer precomputed
skeletons that neuroglancer and cloud-volume (`vol.skeleton.get(id)`) read.

Coordinates: vertices are in world units (e.g. nm), x, y, z order as neuroglancer expects:
(voxel index + chunk voxel offset) × voxel size. kimimaro gets the (x, y, z) view of our
(z, y, x) array with the anisotropy in x, y, z, so no copy and no axis juggling afterwards.

Files in the skeleton dir of a segmentation volume (`info["skeletons"]`, default `skeletons`):

- `{id}:{bbox}`: the fragment of object `id` in one chunk (bbox: the chunk's voxel bounding box
  string `z0-z1_y0-y1_x0-x1`), written by `skeletonize`;
- `{id}`: the merged skeleton of the whole object, written by `merge_skeletons`; this is the
  file neuroglancer and cloud-volume read;
- or, with `merge_skeletons_sharded`, `{shard}.shard` files holding every merged skeleton and a
  `sharding` entry in `info` (then readers use the shards only);
- `info`: {"@type": "neuroglancer_skeletons", identity transform, radius and vertex_types}.

Neighbouring chunks should overlap by one voxel: kimimaro (fix_borders) puts a vertex at the same
place of the shared face in both chunks, so merged fragments connect exactly. Cut tasks with a
stride one voxel smaller than the chunk, e.g. `generate-tasks --chunk-size 65 257 257 --stride
64 256 256`. Without overlap the merge still joins pieces closer than their radii.
"""

from __future__ import annotations

import json
import logging
import os
import re

import numpy as np

from chunkflow.chunk import Chunk, Grid, check_same_grid
from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.io.files import put_files

logger = logging.getLogger(__name__)

__all__ = [
    "SKELETON_INFO",
    "SkeletonVolume",
    "fragment_name",
    "merge_skeletons",
    "merge_skeletons_sharded",
    "skeletonize",
]

DEFAULT_DIR = "skeletons"
FRAGMENT = re.compile(r"^(\d+):(.+)$")
VERTEX_ATTRIBUTES = [
    {"id": "radius", "data_type": "float32", "num_components": 1},
    {"id": "vertex_types", "data_type": "uint8", "num_components": 1},
]
SKELETON_INFO = {
    "@type": "neuroglancer_skeletons",
    "transform": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0],
    "vertex_attributes": VERTEX_ATTRIBUTES,
}
# kimimaro's defaults, apart from scale and const which the caller chooses
TEASAR_PARAMS = {
    "pdrf_scale": 100000,
    "pdrf_exponent": 4,
    "soma_acceptance_threshold": 3500,
    "soma_detection_threshold": 750,
    "soma_invalidation_const": 300,
    "soma_invalidation_scale": 2,
}


# skeletonizing -------------------------------------------------------------------------------
def _labels(seg: Chunk) -> np.ndarray:
    array = np.asarray(seg)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or array.dtype.kind not in "iub" or not seg.is_segmentation:
        raise ChunkflowError(
            f"skeletons need a 3D integer segmentation chunk, got a chunk of {array.dtype}, "
            f"shape {array.shape} and layer type {seg.layer_type.value}"
        )
    return array.view(np.uint8) if array.dtype == np.bool_ else array


def skeletonize(
    seg: Chunk,
    voxel_size=None,
    dust_threshold: int = 1000,
    teasar_scale: float = 1.5,
    teasar_const: float = 300,
    ids=None,
    fix_branching: bool = True,
) -> dict:
    """Skeletonize every object of a segmentation chunk (kimimaro).

    `voxel_size` (z, y, x) defaults to the chunk's. Objects smaller than `dust_threshold`
    voxels are skipped; `ids` restricts to these objects (all must be in the chunk).
    Returns {id: osteoid.Skeleton} with vertices in world units, x, y, z.
    """
    import kimimaro

    labels = _labels(seg)
    voxel_size = seg.voxel_size if voxel_size is None else Cartesian(voxel_size)
    if min(voxel_size) <= 0:
        raise ParameterError(f"`voxel_size` {tuple(voxel_size)}: expected positive numbers")
    if ids is not None:
        import fastremap

        ids = sorted({int(i) for i in ids})
        present = {int(i) for i in fastremap.unique(labels)} - {0}
        missing = [i for i in ids if i not in present]
        if missing:
            raise ParameterError(
                f"`ids` {','.join(map(str, missing))}: not in the chunk {seg.bbox} "
                f"(it holds {len(present)} objects)"
            )
    skeletons = kimimaro.skeletonize(
        labels.T,  # the (x, y, z) view: vertices come out in x, y, z
        teasar_params={"scale": teasar_scale, "const": teasar_const, **TEASAR_PARAMS},
        anisotropy=voxel_size.xyz,
        object_ids=ids,
        dust_threshold=dust_threshold,
        progress=False,
        fix_branching=fix_branching,
        fix_borders=True,
        parallel=1,
    )
    offset = np.asarray((seg.voxel_offset * voxel_size).xyz, dtype=np.float32)
    result = {}
    for label, skeleton in sorted(skeletons.items()):
        skeleton.vertices = skeleton.vertices.astype(np.float32) + offset
        skeleton.id = int(label)
        result[int(label)] = skeleton
    logger.debug(
        "skeletonize: %d objects in %s, voxel size %s", len(result), seg.bbox, tuple(voxel_size)
    )
    return result


def choose_voxel_size(
    seg: Chunk, override=None, volume_voxel_size=None, name: str = "chunk"
) -> Cartesian:
    """The voxel size to skeletonize with: `override`, else the chunk's, unless that is the
    default (1, 1, 1) and the output volume has one. A chunk whose own voxel size differs from
    the output volume's is refused (`name` names it)."""
    if override is not None:
        return Cartesian(override)
    if volume_voxel_size is None:
        return seg.voxel_size
    volume_voxel_size = Cartesian(volume_voxel_size)
    if seg.voxel_size == Cartesian(1, 1, 1):
        return volume_voxel_size
    check_same_grid((name, seg), ("the output volume", Grid(volume_voxel_size)), boxes=None)
    return seg.voxel_size


def skeletonize_for(
    seg: Chunk, volume: SkeletonVolume | None, voxel_size=None, name: str = "chunk", **options
) -> dict:
    """`skeletonize` (with `options`) at the voxel size `choose_voxel_size` picks for writing
    into `volume` (None: no volume): `voxel_size` when given, else the chunk's or the
    volume's."""
    volume_voxel_size = volume.voxel_size if volume is not None else None
    return skeletonize(seg, choose_voxel_size(seg, voxel_size, volume_voxel_size, name), **options)


def fragment_name(label: int, bbox: BoundingBox) -> str:
    return f"{int(label)}:{bbox.string}"


# the volume ----------------------------------------------------------------------------------
class SkeletonVolume:
    """The skeleton dir of a precomputed segmentation volume."""

    def __init__(self, path: str, mip: int = 0):
        from chunkflow.io.precomputed import open_volume, volume_exists

        if not volume_exists(path):
            raise ChunkflowError(
                f"{path}: no segmentation info there (create the volume first, e.g. with "
                "create-info -t segmentation or save)"
            )
        vol = open_volume(path, mip)
        if vol.layer_type != "segmentation":
            raise ChunkflowError(
                f"{path} is an {vol.layer_type} volume; skeletons need a segmentation volume"
            )
        self.volume_path = path.rstrip("/")
        self.info = vol.info
        self.dir = self.info.get("skeletons") or DEFAULT_DIR
        self.path = f"{self.volume_path}/{self.dir}"
        self.voxel_size = Cartesian.from_xyz(vol.resolution)
        self.mip = mip

    @property
    def has_skeletons(self) -> bool:
        return bool(self.info.get("skeletons"))

    def prepare(self) -> None:
        """Add "skeletons" to the volume info and write the skeleton dir's info, if missing."""
        from cloudfiles import CloudFiles

        if not self.has_skeletons:
            self.info["skeletons"] = self.dir
            put_files(self.volume_path, [("info", json.dumps(self.info, indent=2).encode())])
        if not CloudFiles(self.path).exists("info"):
            info = dict(SKELETON_INFO, mip=self.mip)
            put_files(self.path, [("info", json.dumps(info, indent=2).encode())])

    def vertex_attributes(self) -> list:
        from cloudfiles import CloudFiles

        info = CloudFiles(self.path).get_json("info") or {}
        return info.get("vertex_attributes", VERTEX_ATTRIBUTES)

    def write_fragments(self, skeletons: dict, bbox: BoundingBox) -> list[str]:
        """Write `{id}:{bbox}` for each skeleton; returns the file names."""
        self.prepare()
        files = [
            (fragment_name(label, bbox), skeleton.to_precomputed())
            for label, skeleton in skeletons.items()
        ]
        put_files(self.path, files, desc="write skeletons")
        return [name for name, _ in files]


# merging -------------------------------------------------------------------------------------
def list_fragments(skeleton_path: str, prefix: str | None = None) -> dict[int, list[str]]:
    """{id: [fragment names]} for the ids starting with `prefix` (all when None)."""
    from cloudfiles import CloudFiles

    fragments: dict[int, list[str]] = {}
    for name in CloudFiles(skeleton_path).list(prefix=prefix or "", flat=True):
        match = FRAGMENT.match(os.path.basename(name))
        if match:
            fragments.setdefault(int(match.group(1)), []).append(os.path.basename(name))
    return {label: sorted(names) for label, names in sorted(fragments.items())}


def merge_fragments(
    fragments: list, label: int, dust_threshold: float = 0, tick_threshold: float = 0
):
    """Merge skeleton fragments of one object: join, consolidate, drop components shorter
    than `dust_threshold` (cable length), remove loops, join close pieces, remove ticks."""
    import kimimaro
    from osteoid import Skeleton

    merged = Skeleton.simple_merge(fragments)
    merged.id = label
    if merged.empty():
        return merged
    merged = kimimaro.postprocess(merged, dust_threshold, tick_threshold)
    merged.id = label
    return merged


def merge_skeletons(
    volume_path: str,
    prefix: str | None = None,
    dust_threshold: float = 0,
    tick_threshold: float = 0,
) -> dict:
    """Merge the fragments `{id}:*` of every object with an id starting with `prefix` into
    `{id}`. Objects whose merged skeleton is empty (all dust) get no file (a stale one is
    removed). Returns {"merged": n, "dropped": m}."""
    from cloudfiles import CloudFiles

    if prefix is not None and not prefix.isdigit():
        raise ParameterError(f"`prefix` {prefix!r}: expected decimal digits")
    target = _skeleton_volume(volume_path)
    files = CloudFiles(target.path)
    merged = dropped = 0
    fragments = list_fragments(target.path, prefix)
    for label, skeleton in _merged(target, files, fragments, dust_threshold, tick_threshold):
        if skeleton.empty():
            dropped += 1
            if files.exists(str(label)):
                files.delete(str(label))
            continue
        put_files(target.path, [(str(label), skeleton.to_precomputed())])
        merged += 1
    logger.info(
        "skeleton-merge: %d skeletons merged, %d dropped as dust, ids starting with %r in %s",
        merged,
        dropped,
        prefix or "",
        target.path,
    )
    return {"merged": merged, "dropped": dropped}


def merge_skeletons_sharded(
    volume_path: str,
    shards=None,
    dust_threshold: float = 0,
    tick_threshold: float = 0,
    shard_bits: int | None = None,
    minishard_bits: int | None = None,
) -> dict:
    """Merge the fragments of every object into sharded skeletons (`{shard}.shard` files,
    `neuroglancer_uint64_sharded_v1`) and add the sharding to the skeleton info.

    The sharding comes from the number of objects with fragments (or the bits given), so shard
    jobs (`shards`: hex shard numbers; None: all) running at the same time agree on it. Objects
    whose merged skeleton is empty are left out. Returns {"shards": n, "merged": m,
    "dropped": k}.
    """
    from cloudfiles import CloudFiles
    from cloudvolume.datasource.precomputed.sharding import synthesize_shard_files

    from chunkflow.mesh.sharding import (
        group_by_shard,
        shard_count,
        sharding_json,
        sharding_spec,
        wanted_shards,
    )

    target = _skeleton_volume(volume_path)
    fragments = list_fragments(target.path)
    if not fragments:
        raise ChunkflowError(f"no skeleton fragments ({{id}}:{{bbox}}) in {target.path}")
    spec = sharding_spec(len(fragments), shard_bits, minishard_bits)
    groups = group_by_shard(spec, fragments, wanted_shards(spec, shards))
    files = CloudFiles(target.path)
    merged = dropped = 0
    for _shard, labels in sorted(groups.items()):
        data = {}
        shard_fragments = {label: fragments[label] for label in labels}
        for label, skeleton in _merged(
            target, files, shard_fragments, dust_threshold, tick_threshold
        ):
            if skeleton.empty():
                dropped += 1
            else:
                data[label] = skeleton.to_precomputed()
        merged += len(data)
        if data:
            put_files(target.path, sorted(synthesize_shard_files(spec, data).items()))
    info = files.get_json("info") or dict(SKELETON_INFO, mip=target.mip)
    info["sharding"] = sharding_json(spec)
    put_files(target.path, [("info", json.dumps(info, indent=2).encode())])
    logger.info(
        "skeleton-merge: %d skeletons merged into %d of %d shard(s), %d dropped as dust, in %s",
        merged,
        len(groups),
        shard_count(spec),
        dropped,
        target.path,
    )
    return {"shards": shard_count(spec), "merged": merged, "dropped": dropped}


BATCH_FILES = 2000  # fragments downloaded at once (one threaded get per batch, bounded memory)


def _skeleton_volume(volume_path: str) -> SkeletonVolume:
    target = SkeletonVolume(volume_path, 0)
    if not target.has_skeletons:
        raise ChunkflowError(
            f"{volume_path}: its info names no skeletons (run skeletonize -o {volume_path} first)"
        )
    return target


def _merged(target, files, fragments: dict, dust_threshold: float, tick_threshold: float):
    """(label, merged skeleton) of every object of `fragments` ({label: fragment names}),
    downloading the fragment files in batches of at most BATCH_FILES."""
    attributes = target.vertex_attributes()
    for batch in _batches(fragments, BATCH_FILES):
        contents = _download(files, [name for names in batch.values() for name in names])
        for label, names in batch.items():
            pieces = [_decode(contents, target.path, name, label, attributes) for name in names]
            yield label, merge_fragments(pieces, label, dust_threshold, tick_threshold)


def _batches(fragments: dict, max_files: int):
    batch: dict = {}
    count = 0
    for label, names in fragments.items():
        if batch and count + len(names) > max_files:
            yield batch
            batch, count = {}, 0
        batch[label] = names
        count += len(names)
    if batch:
        yield batch


def _download(files, names: list) -> dict:
    contents = {}
    for entry in files.get(names, raise_errors=False):
        if entry["error"] is not None or entry["content"] is None:
            raise ChunkflowError(
                f"{files.cloudpath}/{entry['path']}: unreadable skeleton fragment "
                f"({entry['error'] or 'missing'})"
            )
        contents[entry["path"]] = entry["content"]
    return contents


def _decode(contents: dict, path: str, name: str, label: int, attributes: list):
    from osteoid import Skeleton

    try:
        return Skeleton.from_precomputed(contents[name], label, attributes)
    except Exception as err:
        raise ChunkflowError(f"{path}/{name}: not a precomputed skeleton ({err})") from None
