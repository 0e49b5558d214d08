"""The per-task phases of a segmentation job: fragments, edges and relabel."""

from __future__ import annotations

import numpy as np

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.segmentation.blockwise.plan import (
    ID_BITS,
    LOCAL_MASK,
    Plan,
    encode_ids,
    put_arrays,
    require_tasks,
    take_plane,
)

# ---------------------------------------------------------------------------------------------
# phase 1: fragments


def make_fragments(plan: Plan, bbox: BoundingBox) -> int:
    """Phase 1 of one task; returns the number of fragments in the chunk."""
    from chunkflow.io.precomputed import read_precomputed, write_precomputed

    coords = plan.coords(bbox)
    core, index = plan.cell(coords), plan.index(coords)
    grown = core.grow(plan.margin).intersect(plan.roi)
    inner = core.shift(-grown.start).to_slices()
    if plan.mode == "agglomerate":
        from chunkflow.segmentation.agglomerate import affinity_array, watershed
        from chunkflow.segmentation.regiongraph import contacts

        affs = read_precomputed(plan.input_path, grown, plan.mip)
        affs = affs.with_array(affinity_array(affs))  # float32 once, for both uses
        labels = np.asarray(watershed(affs, plan.aff_threshold_low, plan.aff_threshold_high))
        lut, local = _core_ids(labels, inner)
        affs = np.asarray(affs)[(slice(None), *inner)]
        count = int(local.max())
        u, v, sums, counts = contacts(local, affs, count + 1)
        arrays = dict(
            inner_u=encode_ids(u, index),
            inner_v=encode_ids(v, index),
            inner_sum=sums,
            inner_count=counts,
            **{f"low_{c}": encode_ids(take_plane(local, c, 0), index) for c in range(3)},
            **{f"aff_{c}": take_plane(affs[c], c, 0).astype(np.float32) for c in range(3)},
        )
        # the chunk's basins on the planes just outside its faces (see same_basins)
        for c in range(3):
            for side, at in (("low", inner[c].start - 1), ("high", inner[c].stop)):
                plane = labels[:0, :0, 0]
                if 0 <= at < labels.shape[c]:
                    plane = labels[tuple(at if a == c else inner[a] for a in range(3))]
                arrays[f"shell_{side}_{c}"] = encode_ids(lut[plane], index)
    else:
        labels = _components(plan, grown)
        lut, local = _core_ids(labels, inner)
        count = int(local.max())
        # the chunk's ids on its shell where the shell lies in lower chunks (see find_edges)
        low = core.start - grown.start  # 1 where there is a shell below, else 0
        z, y, _ = (slice(lo, lo + n) for lo, n in zip(low, core.shape))
        empty = labels[:0, :0, 0]
        shells = [
            labels[0] if low[0] else empty,
            labels[z, 0] if low[1] else empty,
            labels[z, y, 0] if low[2] else empty,
        ]
        arrays = {f"shell_{c}": encode_ids(lut[shell], index) for c, shell in enumerate(shells)}
    fragments = encode_ids(local, index)
    arrays.update({f"high_{c}": take_plane(fragments, c, -1) for c in range(3)})
    write_precomputed(
        Chunk(fragments, core.start, plan.voxel_size, LayerType.SEGMENTATION),
        plan.fragments_path,
        create=False,
    )
    put_arrays(plan, f"faces/{core}.npz", count=np.int64(count), **arrays)
    return count


def _components(plan: Plan, grown: BoundingBox) -> np.ndarray:
    """cc3d labels of the grown box."""
    import cc3d

    from chunkflow.io.precomputed import read_precomputed

    data = np.asarray(read_precomputed(plan.input_path, grown, plan.mip))
    if data.ndim == 4:
        data = data[0]
    if plan.threshold is not None:
        data = data > plan.threshold
    return cc3d.connected_components(
        np.ascontiguousarray(data), connectivity=plan.connectivity, out_dtype=np.uint64
    )


def _core_ids(labels: np.ndarray, inner) -> tuple[np.ndarray, np.ndarray]:
    """The chunk's ids 1..n of the labels in its core (in raster order of first voxels), and
    the table label of the grown box -> chunk id (0 for labels outside the core)."""
    import fastremap

    local, mapping = fastremap.renumber(labels[inner], preserve_zero=True)
    lut = np.zeros(int(labels.max()) + 1, dtype=np.uint64)
    lut[np.fromiter(mapping.keys(), np.int64)] = np.fromiter(mapping.values(), np.int64)
    return lut, local


# ---------------------------------------------------------------------------------------------
# phase 2: edges

# offsets of the neighbours that come before a chunk in raster order (first nonzero < 0)
LOWER_NEIGHBOURS = [
    (dz, dy, dx)
    for dz in (-1, 0, 1)
    for dy in (-1, 0, 1)
    for dx in (-1, 0, 1)
    if (dz, dy, dx) < (0, 0, 0)
]


def find_edges(plan: Plan, bbox: BoundingBox) -> int:
    """Phase 2 of one task: its edges of the volume's fragment graph; returns their number.

    Each contact between two chunks is handled by the later chunk in raster order, so every
    edge is found exactly once: agglomerate mode joins the chunk's three low faces to the high
    faces of the chunks below (contact statistics, and the pieces of cut basins, see
    `same_basins`); cc mode joins the chunk's ids on its low shell (from phase 1) to the ids
    the lower chunks gave those voxels.
    """
    coords = plan.coords(bbox)
    core = plan.cell(coords)
    if plan.mode == "agglomerate":
        below = [plan.neighbour(coords, -np.eye(3, dtype=int)[c]) for c in range(3)]
    else:
        below = [plan.neighbour(coords, offset) for offset in LOWER_NEIGHBOURS]
    wanted = [core] + [b for b in below if b is not None]
    files = dict(zip(wanted, require_tasks(plan, "faces", wanted, "segment-fragments")))
    own = files[core]
    if plan.mode == "agglomerate":
        inner = tuple(own[f"inner_{k}"] for k in ("u", "v", "sum", "count"))
        parts = [(*inner, np.zeros(len(inner[0]), dtype=bool))]
        for c, lower in enumerate(below):
            if lower is not None:
                parts.append(_face_edges(own, files[lower], c))
        u, v, sums, counts, forced = (np.concatenate(p) for p in zip(*parts))
        arrays = dict(u=u, v=v, sum=sums, count=counts, forced=forced)
    else:
        pairs = []
        for c, owners in enumerate(_shell_owners(plan, core, files)):
            shell = own[f"shell_{c}"]
            both = (shell != 0) & (owners != 0)
            pairs.append(np.stack([shell[both], owners[both]], axis=1))
        pairs = np.unique(np.concatenate(pairs), axis=0)
        arrays = dict(u=pairs[:, 0], v=pairs[:, 1])
    put_arrays(plan, f"edges/{core}.npz", fragments=own["count"], **arrays)
    return len(arrays["u"])


def _face_edges(upper: dict, lower: dict, axis: int):
    """Edges across the face between a chunk and the chunk below it along `axis`: contact
    statistics, and which pairs are pieces of one watershed basin cut by the face (forced)."""
    from chunkflow.segmentation.regiongraph import plane_contacts

    u, v, sums, counts = plane_contacts(
        upper[f"low_{axis}"], lower[f"high_{axis}"], upper[f"aff_{axis}"]
    )
    same = same_basins(
        upper[f"shell_low_{axis}"],
        lower[f"high_{axis}"],
        lower[f"shell_high_{axis}"],
        upper[f"low_{axis}"],
    )
    touching = set(zip(u.tolist(), v.tolist()))
    forced = np.array([(a, b) in same for a, b in zip(u.tolist(), v.tolist())], dtype=bool)
    extra = sorted(same - touching)  # pieces that share no contact voxel-edge: no statistics
    extra = np.array(extra, dtype=np.uint64).reshape(-1, 2)
    return (
        np.concatenate([u, extra[:, 0]]),
        np.concatenate([v, extra[:, 1]]),
        np.concatenate([sums, np.zeros(len(extra))]),
        np.concatenate([counts, np.zeros(len(extra), dtype=counts.dtype)]),
        np.concatenate([forced, np.ones(len(extra), dtype=bool)]),
    )


def same_basins(shell_up, rim_down, shell_down, rim_up) -> set:
    """Pairs (u, v), u < v, of fragments on the two sides of a face that are one basin.

    Each chunk's watershed ran with context beyond its faces: `shell_up` holds the upper
    chunk's fragments as its watershed saw them on the lower chunk's rim `rim_down`, and
    `shell_down` the lower chunk's on the upper chunk's rim `rim_up`. Two pieces are one basin
    when each is the other's most frequent partner in both views, so the pieces of a basin
    that both watersheds agree on are joined before any merging, as if never cut.
    """

    def top_partner(a, b) -> dict:
        both = (a != 0) & (b != 0)
        if not both.any():
            return {}
        pairs, votes = np.unique(np.stack([a[both], b[both]], axis=1), axis=0, return_counts=True)
        order = np.lexsort((pairs[:, 1], -votes, pairs[:, 0]))
        pairs = pairs[order]
        first = np.ones(len(pairs), dtype=bool)
        first[1:] = pairs[1:, 0] != pairs[:-1, 0]
        return dict(zip(pairs[first, 0].tolist(), pairs[first, 1].tolist()))

    if shell_up.size == 0 or shell_down.size == 0:  # no context: no view of the other side
        return set()
    up, down = top_partner(shell_up, rim_down), top_partner(shell_down, rim_up)
    return {(min(a, b), max(a, b)) for a, b in up.items() if down.get(b) == a}


def _shell_owners(plan: Plan, core: BoundingBox, files: dict) -> list[np.ndarray]:
    """The lower chunks' ids on the voxels of the chunk's low shell, plane by plane.

    Shell plane 0 lies at z0 - 1 over the grown y, x extent; plane 1 at y0 - 1 over the chunk's
    z and the grown x; plane 2 at x0 - 1 over the chunk's z and y. A lower chunk holds such a
    voxel on its high face along the plane's axis.
    """
    grown = core.grow(1).intersect(plan.roi)
    extents = [
        BoundingBox(
            (core.start[0] - 1, grown.start[1], grown.start[2]), (core.start[0], *grown.stop[1:])
        ),
        BoundingBox(
            (core.start[0], core.start[1] - 1, grown.start[2]),
            (core.stop[0], core.start[1], grown.stop[2]),
        ),
        BoundingBox((*core.start[:2], core.start[2] - 1), (*core.stop[:2], core.start[2])),
    ]
    planes = []
    for axis, extent in enumerate(extents):
        if extent.is_empty or core.start[axis] == plan.roi.start[axis]:
            planes.append(np.zeros((0, 0), dtype=np.uint64))
            continue
        owners = np.zeros(extent.shape, dtype=np.uint64)
        for lower, data in files.items():
            overlap = lower.intersect(extent)
            if lower == core or overlap.is_empty:
                continue
            high = np.expand_dims(data[f"high_{axis}"], axis)  # the plane as a 1-thick box
            face = BoundingBox(
                [lower.stop[a] - 1 if a == axis else lower.start[a] for a in range(3)],
                lower.stop,
            )
            owners[overlap.shift(-extent.start).to_slices()] = high[
                overlap.shift(-face.start).to_slices()
            ]
        planes.append(np.take(owners, 0, axis=axis))
    return planes


# ---------------------------------------------------------------------------------------------
# phase 4: relabel


def relabel(plan: Plan, bbox: BoundingBox) -> None:
    """Phase 4 of one task: write its fragments as object ids into the output volume."""
    from chunkflow.io.files import get_file, put_files
    from chunkflow.io.precomputed import read_precomputed, write_precomputed

    coords = plan.coords(bbox)
    core, index = plan.cell(coords), plan.index(coords)
    if get_file(plan.work_path, "merge/summary.json") is None:
        raise ChunkflowError(
            f"the global merge has not run ({plan.work_path}/merge/summary.json is missing); "
            "run segment-merge first"
        )
    first, stop = np.frombuffer(
        get_file(plan.work_path, "merge/offsets", 8 * index, 8 * index + 16), dtype="<u8"
    )
    lut = np.zeros(int(stop - first) + 1, dtype=np.uint64)
    if stop > first:
        lut[1:] = np.frombuffer(
            get_file(plan.work_path, "merge/ids", 8 * int(first), 8 * int(stop)), dtype="<u8"
        )
    fragments = np.asarray(read_precomputed(plan.fragments_path, core))
    local = (fragments & LOCAL_MASK).astype(np.int64)
    foreign = (fragments != 0) & ((fragments >> np.uint64(ID_BITS)) != np.uint64(index))
    if foreign.any() or local.max(initial=0) >= len(lut):
        raise ChunkflowError(
            f"fragments of task {core} do not match its phase-1 record; rerun segment-fragments "
            "and the later phases"
        )
    write_precomputed(
        Chunk(lut[local], core.start, plan.voxel_size, LayerType.SEGMENTATION),
        plan.output_path,
        create=False,
    )
    put_files(plan.work_path, [(f"relabeled/{core}", b"")])
