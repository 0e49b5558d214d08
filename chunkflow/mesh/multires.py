"""Multi-resolution sharded meshes (neuroglancer `neuroglancer_multilod_draco`), in two phases.

Phase 1, per task (`mesh --output-format multires`): every object's surface in the chunk goes
into one fragment file `{mesh dir}/{B}.frags` (B: the chunk's world bounding box), an index of
the labels followed by each label's mesh as a legacy precomputed mesh in world units (nm).

Phase 2, per shard (`mesh-merge-sharded`): the labels that hash to a shard are gathered from every
fragment file, joined, and turned into levels of detail (lod 0 = the joined mesh, lod k simplified
to 1 / `factor**k` of its faces); each lod is cut into an octree grid of fragments (cells of
chunk_shape × 2**k), quantized to `vertex_quantization_bits` and draco encoded, followed by the
binary manifest, and the shard file `{shard}.shard` is written with cloud-volume's shard
synthesis. The sharding spec is derived from the number of labels in all fragment files (or
given), so every shard job computes the same one and writes the same `info`:

    {"@type": "neuroglancer_multilod_draco", "vertex_quantization_bits": 16,
     "transform": [rx,0,0,0, 0,ry,0,0, 0,0,rz,0], "lod_scale_multiplier": 1.0, "sharding": {...}}

Model coordinates are voxels at the volume's mip-0 resolution; `transform` scales them to nm.
"""

from __future__ import annotations

import json
import logging
import re
import struct

import numpy as np

from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import BoundingBox
from chunkflow.io.files import get_file, list_files, put_files
from chunkflow.mesh.sharding import (
    group_by_shard,
    shard_count,
    sharding_json,
    sharding_spec,
    wanted_shards,
)

logger = logging.getLogger(__name__)

FRAGS = re.compile(r"^(\d+-\d+_\d+-\d+_\d+-\d+)\.frags$")
MAGIC = b"CFMFRAG1"
_ENTRY = struct.Struct("<QQQ")  # label, offset, length


# fragment files --------------------------------------------------------------------------------
def encode_fragments(meshes: dict) -> bytes:
    """{label: mesh in nm} as one fragment file: magic, count, sorted (label, offset, length)
    entries, then each label's legacy precomputed mesh."""
    labels = sorted(int(label) for label in meshes)
    payloads = [meshes[label].to_precomputed() for label in labels]
    offset = len(MAGIC) + 8 + _ENTRY.size * len(labels)
    index = []
    for label, payload in zip(labels, payloads):
        index.append(_ENTRY.pack(label, offset, len(payload)))
        offset += len(payload)
    return b"".join([MAGIC, struct.pack("<Q", len(labels)), *index, *payloads])


def decode_index(data: bytes, name: str) -> dict[int, tuple[int, int]]:
    """{label: (offset, length)} from the start of a fragment file (at least its header and
    index); a damaged file is an error naming it."""
    start = len(MAGIC) + 8
    if data[: len(MAGIC)] != MAGIC or len(data) < start:
        raise ChunkflowError(f"{name} is not a chunkflow mesh fragment file")
    (count,) = struct.unpack_from("<Q", data, len(MAGIC))
    if len(data) < start + count * _ENTRY.size:
        raise ChunkflowError(f"{name} is truncated (an index of {count} labels)")
    index = {}
    for k in range(count):
        label, offset, length = _ENTRY.unpack_from(data, start + k * _ENTRY.size)
        index[label] = (offset, length)
    return index


def write_fragments(mesh_path: str, meshes: dict, bbox: BoundingBox) -> str:
    """Write one task's meshes (nm) as `{bbox}.frags` under `mesh_path`; returns its name."""
    name = f"{bbox.string}.frags"
    put_files(mesh_path, [(name, encode_fragments(meshes))], desc="write fragments")
    return name


def read_indices(mesh_path: str) -> dict[str, dict[int, tuple[int, int]]]:
    """{file name: its index} of every fragment file; reads only the headers and indices."""
    indices = {}
    for name in sorted(n for n in list_files(mesh_path) if FRAGS.match(n)):
        head = get_file(mesh_path, name, 0, len(MAGIC) + 8) or b""
        count = struct.unpack_from("<Q", head, len(MAGIC))[0] if len(head) == len(MAGIC) + 8 else 0
        data = get_file(mesh_path, name, 0, len(MAGIC) + 8 + count * _ENTRY.size) or b""
        indices[name] = decode_index(data, f"{mesh_path}/{name}")
    return indices


def read_meshes(mesh_path: str, name: str, index: dict, labels) -> dict:
    """{label: zmesh.Mesh in nm} of `labels` from one fragment file: one ranged read each, or
    the whole file when they are most of it."""
    import zmesh
    from cloudfiles import CloudFiles

    labels = [label for label in labels if label in index]
    if not labels:
        return {}
    wanted = sum(index[label][1] for label in labels)
    if wanted * 2 > sum(length for _, length in index.values()):  # most of it: read it whole
        whole = get_file(mesh_path, name) or b""
        replies = [
            {"content": whole[index[label][0] : sum(index[label])], "error": None}
            for label in labels
        ]
    else:
        requests = [
            {"path": name, "start": index[label][0], "end": sum(index[label])} for label in labels
        ]
        replies = CloudFiles(mesh_path).get(requests, raise_errors=False)
    meshes = {}
    for label, reply in zip(labels, replies):
        content = reply["content"]
        if reply["error"] is not None or content is None or len(content) != index[label][1]:
            raise ChunkflowError(f"{mesh_path}/{name} is truncated or unreadable (label {label})")
        try:
            meshes[label] = zmesh.Mesh.from_precomputed(content)
        except Exception as err:
            raise ChunkflowError(f"{mesh_path}/{name}: label {label} is no mesh ({err})") from None
    return meshes


# info ----------------------------------------------------------------------------------------
def mesh_info(resolution_xyz, spec, vertex_quantization_bits: int = 16) -> dict:
    rx, ry, rz = (float(r) for r in resolution_xyz)
    return {
        "@type": "neuroglancer_multilod_draco",
        "vertex_quantization_bits": int(vertex_quantization_bits),
        "transform": [rx, 0, 0, 0, 0, ry, 0, 0, 0, 0, rz, 0],
        "lod_scale_multiplier": 1.0,
        "sharding": sharding_json(spec),
    }


# levels of detail ------------------------------------------------------------------------------
def _morton(position) -> int:
    code = 0
    for bit in range(21):
        for axis in range(3):
            code |= ((int(position[axis]) >> bit) & 1) << (3 * bit + axis)
    return code


def build_lods(mesh, num_lods: int, factor: int) -> list:
    """lod 0 is `mesh`; lod k is `mesh` simplified to 1 / factor**k of its faces (zmesh's fast
    quadric simplification; its edge-collapse simplifier can leave NaN vertices on joined
    meshes). Stops early once a level no longer loses faces."""
    import zmesh

    lods = [mesh]
    for k in range(1, num_lods):
        target = max(len(mesh.faces) // factor**k, 4)
        coarse = zmesh.simplify_fqmr(mesh, target_count=target, preserve_border=True)
        if len(coarse.faces) < 4 or len(coarse.faces) >= len(lods[-1].faces):
            break
        if not np.all(np.isfinite(coarse.vertices)):
            break
        lods.append(coarse)
    return lods


def draco_fragment(stored, faces, vertex_quantization_bits: int, compression_level: int) -> bytes:
    """Draco bytes of a fragment with integer "stored model" vertices; b"" (an empty fragment,
    which the spec allows) when quantization left no triangle with three distinct corners."""
    import DracoPy

    faces = np.asarray(faces, np.uint32).reshape(-1, 3)
    a, b, c = (stored[faces[:, k]] for k in range(3))
    distinct = np.any(a != b, axis=1) & np.any(b != c, axis=1) & np.any(a != c, axis=1)
    faces = faces[distinct]
    if len(faces) == 0:
        return b""
    minpt = stored.min(axis=0)
    span = int((stored.max(axis=0) - minpt).max())
    try:
        return DracoPy.encode(
            stored,
            faces,
            quantization_bits=vertex_quantization_bits,
            compression_level=compression_level,
            quantization_range=span,
            quantization_origin=minpt,
            create_metadata=True,
        )
    except DracoPy.EncodingFailedException:  # e.g. only collinear triangles left
        return b""


def encode_multires(
    mesh_voxels,
    label: int,
    num_lods: int,
    factor: int,
    vertex_quantization_bits: int = 16,
    compression_level: int = 7,
):
    """One object's draco fragments and manifest; `mesh_voxels` is in voxel units.

    Returns (fragment data + manifest, manifest length), or None for a flat mesh."""
    import zmesh
    from cloudvolume.datasource.precomputed.mesh.multilod import (
        MultiLevelPrecomputedMeshManifest,
    )

    vertices = np.asarray(mesh_voxels.vertices, np.float64)
    if len(vertices) == 0 or len(mesh_voxels.faces) == 0:
        return None
    origin = np.floor(vertices.min(axis=0))
    shape = vertices.max(axis=0) - origin
    if np.any(shape <= 0):
        return None
    lods = build_lods(mesh_voxels, num_lods, factor)
    top = len(lods) - 1
    # the top lod is a single cell holding the whole object; lod k cells are chunk_shape × 2**k
    chunk_shape = np.ceil((shape + 1) / 2**top)
    quant = 2**vertex_quantization_bits - 1

    cells: list[dict] = []  # per lod: {position: zmesh.Mesh}
    for k, lod in enumerate(lods):
        if k == top:
            cells.append({(0, 0, 0): lod})
            continue
        pieces = zmesh.chunk_mesh(lod, chunk_shape * 2**k, grid_origin=tuple(origin))
        cells.append({tuple(int(p) for p in pos): m for pos, m in pieces.items() if len(m.faces)})
    # every node needs its parent one lod up (an empty fragment when the coarser mesh has none)
    for k in range(top):
        for pos in list(cells[k]):
            parent = tuple(p // 2 for p in pos)
            cells[k + 1].setdefault(parent, None)

    binaries, positions, sizes = [], [], []
    for k in range(len(lods)):
        order = sorted(cells[k], key=_morton)
        positions.append(np.array(order, dtype=np.uint32).reshape(-1, 3))
        size = chunk_shape * 2**k
        lod_sizes = []
        for pos in order:
            piece = cells[k][pos]
            data = b""
            if piece is not None and len(piece.faces):
                low = origin + np.asarray(pos) * size
                stored = np.clip(np.round((piece.vertices - low) / size * quant), 0, quant)
                data = draco_fragment(
                    stored.astype(np.uint32),
                    piece.faces,
                    vertex_quantization_bits,
                    compression_level,
                )
            binaries.append(data)
            lod_sizes.append(len(data))
        sizes.append(lod_sizes)
    manifest = MultiLevelPrecomputedMeshManifest(
        segment_id=label,
        chunk_shape=chunk_shape,
        grid_origin=origin,
        num_lods=len(lods),
        lod_scales=[2**k for k in range(len(lods))],
        vertex_offsets=[[0, 0, 0]] * len(lods),
        num_fragments_per_lod=[len(p) for p in positions],
        fragment_positions=positions,
        fragment_offsets=[s for lod_sizes in sizes for s in lod_sizes],
    ).to_binary()
    return b"".join(binaries) + manifest, len(manifest)


# phase 2 ---------------------------------------------------------------------------------------
def _encode_shard(mesh_path, indices, labels, resolution, lods) -> tuple[dict, dict]:
    """The multires encodings (bytes, fragment offsets) of one shard's objects: their pieces
    from every fragment file, joined, in voxels, cut into `lods` = (num_lods, factor,
    vertex_quantization_bits, compression_level)."""
    import zmesh

    data, offsets = {}, {}
    pieces: dict[int, list] = {}
    for name, index in indices.items():  # fragment files in name order: a stable join
        for label, mesh in read_meshes(mesh_path, name, index, labels).items():
            pieces.setdefault(label, []).append(mesh)
    for label in labels:
        parts = pieces.pop(label)
        joined = parts[0] if len(parts) == 1 else zmesh.Mesh.concatenate(*parts)
        joined = joined.consolidate()
        voxels = zmesh.Mesh((joined.vertices / resolution).astype(np.float32), joined.faces, None)
        encoded = encode_multires(voxels, label, *lods)
        if encoded is not None:
            data[label], offsets[label] = encoded
    return data, offsets


def merge_sharded(
    volume_path: str,
    shards=None,
    num_lods: int = 3,
    factor: int = 4,
    vertex_quantization_bits: int = 16,
    shard_bits: int | None = None,
    minishard_bits: int | None = None,
    compression_level: int = 7,
) -> dict:
    """Merge the fragment files of a volume's mesh dir into sharded multi-resolution meshes.

    `shards`: hex shard numbers to write (None: all). Returns {"shards": total number of
    shards, "written": {shard: labels}}.
    """
    from chunkflow.io.precomputed import open_volume

    if vertex_quantization_bits not in (10, 16):  # the two neuroglancer reads
        raise ChunkflowError(
            f"vertex_quantization_bits must be 10 or 16, got {vertex_quantization_bits}"
        )
    if num_lods < 1 or factor < 2:
        raise ChunkflowError(f"num_lods must be ≥ 1 and factor ≥ 2, got {num_lods}, {factor}")
    vol = open_volume(volume_path, 0)
    if vol.layer_type != "segmentation":
        raise ChunkflowError(f"{volume_path} is a {vol.layer_type} volume, not a segmentation")
    mesh_path = f"{volume_path.rstrip('/')}/{vol.info.get('mesh') or 'mesh'}"
    indices = read_indices(mesh_path)
    if not indices:
        raise ParameterError(
            f"no fragment files (*.frags) in {mesh_path}: mesh the segmentation with `fmt` "
            "multires first"
        )
    labels = sorted({label for index in indices.values() for label in index})
    spec = sharding_spec(len(labels), shard_bits, minishard_bits)
    total = shard_count(spec)
    by_shard = group_by_shard(spec, labels, wanted_shards(spec, shards))

    resolution = np.asarray(vol.resolution, np.float64)  # x, y, z
    info = mesh_info(resolution, spec, vertex_quantization_bits)
    written = {}
    lods = (num_lods, factor, vertex_quantization_bits, compression_level)
    for shard, shard_labels in sorted(by_shard.items()):
        data, offsets = _encode_shard(mesh_path, indices, shard_labels, resolution, lods)
        if not data:
            continue
        from cloudvolume.datasource.precomputed.sharding import synthesize_shard_files

        shard_files = synthesize_shard_files(spec, data, offsets)
        put_files(mesh_path, sorted(shard_files.items()), desc="write shards")
        written[shard] = len(data)
    # the same info from every shard job (same fragment files, same spec)
    put_files(mesh_path, [("info", json.dumps(info).encode())])
    if not vol.info.get("mesh"):
        vol.info["mesh"] = "mesh"
        vol.commit_info()
    logger.info(
        "mesh-merge-sharded: %d objects in %d of %d shard(s) written to %s",
        sum(written.values()),
        len(written),
        total,
        mesh_path,
    )
    return {"shards": total, "written": written}
