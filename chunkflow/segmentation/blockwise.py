"""Whole-volume segmentation in chunks: one id per object across every chunk and worker.

A job turns a precomputed INPUT volume into a new precomputed uint64 segmentation OUTPUT whose
ids are unique over the whole volume and whose objects continue across chunk faces. It runs in
phases over one grid of chunks (the tasks); every per-chunk phase is an ordinary task that any
worker may run, any number of times, in any order within its phase:

1. `fragments` (per task): label the chunk, grown by a context margin (clipped to the volume),
   keep the labels of the chunk itself, store them in a fragment volume and keep the chunk's
   faces and inner contacts.
2. `edges` (per task): join the chunk's low faces to the faces of the chunks below it and store
   the task's edges of the whole volume's fragment graph.
3. `merge` (once, in one process): read every task's edges (never voxels) and give each
   fragment its object id; memory grows with fragments and edges only.
4. `relabel` (per task): write the chunk's fragments as object ids into OUTPUT.

Modes:

- ``agglomerate``: INPUT is a 3-channel affinity map in the `agglomerate` convention (channel c
  of voxel p links p and p - e_c; channels z, y, x). Fragments are waterz watershed basins of
  the chunk grown by the margin, cut at the chunk's faces; the edges carry the sum and number of
  the affinities across each contact, inside chunks and across faces, and `merge` agglomerates
  the whole graph with waterz's mean-affinity rule. The pieces of a basin cut by a face are
  joined first, as one fragment, where the watersheds of both chunks (each with its context
  beyond the face) agree that they are one basin. With one chunk this is exactly waterz on the
  whole volume; with many, it is too wherever the margin lets the chunks' watersheds see the
  basins as the whole volume's does.
- ``cc``: connected components (cc3d, 6/18/26 connectivity) of a label volume (distinct ids stay
  distinct, 0 is background) or of a map above `threshold`. Each chunk is labelled with a
  one-voxel shell of its neighbours, so every contact across a face is seen; the result equals
  cc3d on the whole volume up to the numbering.

Ids: fragment k of task t is stored as (t << 32) | k, with t the task's index in z, y, x raster
order of the grid and k counted from 1 in raster order of first voxels; object ids are 1, 2,
... in the order objects first appear along (t, k). All of it follows from the data and the
grid, never from which worker ran a task or when: a retried task writes the same bytes.

Work data lives beside the output, in the same storage (file://, gs://, s3://), so workers need
nothing else (default `{OUTPUT}/blockwise`)::

    plan.json            the job: mode, input, region, chunk grid, parameters (written last)
    fragments/           precomputed uint64 volume of per-chunk fragment ids
    faces/{bbox}.npz     phase 1 of a task: fragment count, inner contacts, face planes
    edges/{bbox}.npz     phase 2 of a task: fragment count and the task's graph edges
    merge/ids            the object id of every fragment, uint64, tasks in grid order
    merge/offsets        index in merge/ids of each task's first fragment (uint64, tasks + 1)
    merge/summary.json   written last by the merge: fragments, edges, objects
    relabeled/{bbox}     phase 4 of a task is done
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian

logger = logging.getLogger("chunkflow")

MODES = ("agglomerate", "cc")
PLAN_FORMAT = "chunkflow-blockwise-segmentation"
ID_BITS = 32
LOCAL_MASK = np.uint64((1 << ID_BITS) - 1)
MAX_BLOCK = 64
# context read around a chunk: enough for the watershed of two neighbouring chunks to agree on
# the basins that cross their face (agglomerate); one voxel sees every contact (cc)
DEFAULT_MARGIN = {"agglomerate": (8, 8, 8), "cc": (1, 1, 1)}


@dataclass(frozen=True)
class Plan:
    """A whole-volume segmentation job: where, what, and the grid of its tasks."""

    mode: str
    input_path: str
    mip: int
    output_path: str
    work_path: str
    roi: BoundingBox
    chunk_size: Cartesian
    voxel_size: Cartesian
    margin: Cartesian = Cartesian(1, 1, 1)
    threshold: float | None = None
    aff_threshold_low: float = 0.0001
    aff_threshold_high: float = 0.9999
    connectivity: int = 6

    # the grid -----------------------------------------------------------------------------
    @property
    def grid(self) -> Cartesian:
        return self.roi.shape.ceildiv(self.chunk_size)

    @property
    def num_tasks(self) -> int:
        return self.grid.prod

    def cell(self, coords) -> BoundingBox:
        """The chunk at grid coordinates (z, y, x), clipped to the region."""
        start = self.roi.start + Cartesian(coords) * self.chunk_size
        return BoundingBox.from_delta(start, self.chunk_size).intersect(self.roi)

    def coords(self, bbox: BoundingBox) -> Cartesian:
        """Grid coordinates of a task; an error unless `bbox` is a chunk of this grid."""
        offset = bbox.start - self.roi.start
        coords = offset // self.chunk_size
        on_grid = offset % self.chunk_size == (0, 0, 0) and all(
            0 <= c < g for c, g in zip(coords, self.grid)
        )
        if not on_grid or bbox not in (
            self.cell(coords),
            BoundingBox.from_delta(bbox.start, self.chunk_size),
        ):
            raise ChunkflowError(
                f"task {bbox} is not a chunk of the job's grid: chunks of "
                f"{' '.join(map(str, self.chunk_size))} (z y x) from {tuple(self.roi.start)} "
                f"over {self.roi}"
            )
        return coords

    def index(self, coords) -> int:
        z, y, x = coords
        return (z * self.grid[1] + y) * self.grid[2] + x

    def tasks(self):
        """(index, bbox) of every task, in grid order."""
        for z in range(self.grid[0]):
            for y in range(self.grid[1]):
                for x in range(self.grid[2]):
                    yield self.index((z, y, x)), self.cell((z, y, x))

    def neighbour(self, coords, offset) -> BoundingBox | None:
        coords = Cartesian(coords) + Cartesian(offset)
        if all(0 <= c < g for c, g in zip(coords, self.grid)):
            return self.cell(coords)
        return None

    # places ---------------------------------------------------------------------------------
    @property
    def fragments_path(self) -> str:
        return f"{self.work_path}/fragments"

    # (de)serialisation ------------------------------------------------------------------------
    def to_json(self) -> str:
        fields = dict(self.__dict__)
        fields["roi"] = self.roi.string
        for name in ("chunk_size", "voxel_size", "margin"):
            fields[name] = list(fields[name])
        return json.dumps({"format": PLAN_FORMAT, "version": 1, **fields}, indent=2)

    @classmethod
    def from_json(cls, text: str, where: str) -> Plan:
        try:
            fields = json.loads(text)
            if fields.pop("format", None) != PLAN_FORMAT or fields.pop("version", None) != 1:
                raise ValueError("not a version 1 plan")
            fields["roi"] = BoundingBox.from_string(fields["roi"])
            for name in ("chunk_size", "voxel_size", "margin"):
                fields[name] = Cartesian(fields[name])
            return cls(**fields)
        except (ValueError, TypeError, KeyError, ChunkflowError) as err:
            raise ChunkflowError(f"{where}: not a segmentation plan ({err})") from None


def default_work_path(output_path: str) -> str:
    return f"{output_path.rstrip('/')}/blockwise"


def default_block_size(chunk_size) -> Cartesian:
    """Per axis, the largest divisor of the chunk size that is at most 64."""
    return Cartesian(
        max(d for d in range(1, min(c, MAX_BLOCK) + 1) if c % d == 0) for c in chunk_size
    )


# ---------------------------------------------------------------------------------------------
# set-up


def setup(
    mode: str,
    input_path: str,
    output_path: str,
    chunk_size,
    mip: int = 0,
    margin=None,
    threshold: float | None = None,
    aff_threshold_low: float = 0.0001,
    aff_threshold_high: float = 0.9999,
    connectivity: int = 6,
    block_size=None,
    encoding: str = "compressed_segmentation",
    work_path: str | None = None,
) -> Plan:
    """Check the input, create the (empty) output and fragment volumes and store the plan.

    `margin` is the context read around each chunk for its labels: in agglomerate mode any
    size (default 8 8 8; at least 1 to see every contact of the chunk, more lets the
    watersheds of neighbouring chunks agree on the basins across their faces); cc mode reads
    1. The output must not exist yet: a job never writes into a volume it did not create.
    """
    from chunkflow.io.files import get_file, put_files
    from chunkflow.io.precomputed import create_info, open_volume, volume_bounds, volume_exists

    if mode not in MODES:
        raise ChunkflowError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    chunk_size = Cartesian(chunk_size)
    margin = Cartesian(DEFAULT_MARGIN[mode] if margin is None else margin)
    if min(chunk_size) <= 0 or min(margin) < 0:
        raise ChunkflowError(
            f"chunk size {tuple(chunk_size)} must be positive and margin {tuple(margin)} >= 0"
        )
    if chunk_size.prod >= 1 << ID_BITS:
        raise ChunkflowError(
            f"chunk size {tuple(chunk_size)} holds 2^32 voxels or more: fragment ids of a "
            "chunk have 32 bits; use smaller chunks"
        )
    for name, value in (
        ("threshold", threshold),
        ("aff_threshold_low", aff_threshold_low),
        ("aff_threshold_high", aff_threshold_high),
    ):
        if mode == "agglomerate" and value is not None and not 0.0 <= value <= 1.0:
            raise ChunkflowError(f"{name} {value} is out of range: expected [0, 1]")
    if connectivity not in (6, 18, 26):
        raise ChunkflowError(f"connectivity {connectivity}: expected 6, 18 or 26")
    block_size = default_block_size(chunk_size) if block_size is None else Cartesian(block_size)
    if min(block_size) <= 0 or chunk_size % block_size != (0, 0, 0):
        raise ChunkflowError(
            f"block size {tuple(block_size)} does not divide the chunk size "
            f"{tuple(chunk_size)}: every task must write whole blocks"
        )

    vol = open_volume(input_path, mip)
    dtype, channels = np.dtype(vol.dtype), vol.num_channels
    if mode == "agglomerate":
        threshold = 0.7 if threshold is None else threshold
        if channels != 3 or dtype not in (np.float32, np.float64, np.uint8):
            raise ChunkflowError(
                f"{input_path}: {channels} channel(s) of {dtype}; agglomerate mode needs an "
                "affinity map of 3 float32 (or uint8) channels, z, y, x"
            )
        if connectivity != 6:
            raise ChunkflowError("connectivity applies to cc mode only")
    else:
        if channels != 1:
            raise ChunkflowError(
                f"{input_path}: {channels} channels; cc mode needs one channel (labels, a "
                "binary volume or a map with a threshold)"
            )
        if dtype.kind == "f" and threshold is None:
            raise ChunkflowError(
                f"{input_path}: {dtype} values; cc mode needs a threshold for a float map"
            )
        if margin != (1, 1, 1):
            raise ChunkflowError(
                f"margin {tuple(margin)}: cc mode always reads one voxel around each chunk"
            )
    bounds = volume_bounds(input_path, mip)
    work_path = (work_path or default_work_path(output_path)).rstrip("/")
    for exists, what in (
        (volume_exists(output_path), f"{output_path} already holds a volume"),
        (get_file(work_path, "plan.json") is not None, f"{work_path} holds a job already"),
    ):
        if exists:
            raise ChunkflowError(
                f"{what}: a segmentation job writes a new volume; choose another output "
                "path or delete the old one"
            )
    plan = Plan(
        mode=mode,
        input_path=input_path,
        mip=mip,
        output_path=output_path,
        work_path=work_path,
        roi=bounds,
        chunk_size=chunk_size,
        voxel_size=Cartesian.from_xyz(vol.resolution),
        margin=margin,
        threshold=threshold,
        aff_threshold_low=aff_threshold_low,
        aff_threshold_high=aff_threshold_high,
        connectivity=connectivity,
    )
    common = dict(
        volume_size=bounds.shape,
        voxel_size=plan.voxel_size,
        voxel_offset=bounds.start,
        dtype="uint64",
        layer_type=LayerType.SEGMENTATION,
        block_size=block_size,
    )
    create_info(plan.fragments_path, encoding="compressed_segmentation", **common)
    create_info(output_path, encoding=encoding, **common)
    put_files(work_path, [("plan.json", plan.to_json().encode())])
    logger.info(
        "segment-setup: %s of %s into %s, %d tasks of %s over %s",
        mode,
        input_path,
        output_path,
        plan.num_tasks,
        " ".join(map(str, chunk_size)),
        bounds,
    )
    return plan


def load_plan(output_path: str, work_path: str | None = None) -> Plan:
    from chunkflow.io.files import get_file

    work_path = (work_path or default_work_path(output_path)).rstrip("/")
    text = get_file(work_path, "plan.json")
    if text is None:
        raise ChunkflowError(
            f"{output_path}: no segmentation job there ({work_path}/plan.json is missing); "
            "run segment-setup first"
        )
    return Plan.from_json(text.decode(), f"{work_path}/plan.json")


# ---------------------------------------------------------------------------------------------
# per-task files


def _put_arrays(plan: Plan, name: str, **arrays) -> None:
    from chunkflow.io.files import put_files

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    put_files(plan.work_path, [(name, buffer.getvalue())])


def _get_arrays(plan: Plan, name: str) -> dict | None:
    from chunkflow.io.files import get_file

    data = get_file(plan.work_path, name)
    if data is None:
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _require(plan: Plan, folder: str, bboxes: list, phase: str) -> list[dict]:
    """The per-task files of `bboxes` from `folder`; one error naming all that are missing."""
    found = [_get_arrays(plan, f"{folder}/{b}.npz") for b in bboxes]
    _unfinished(plan, phase, folder, [b for b, f in zip(bboxes, found) if f is None])
    return found


def _unfinished(plan: Plan, phase: str, folder: str, missing: list) -> None:
    if missing:
        shown = ", ".join(map(str, missing[:4]))
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise ChunkflowError(
            f"{phase} has not finished for {len(missing)} task(s): {shown}{more} (nothing in "
            f"{plan.work_path}/{folder}/); run it on every task first"
        )


def _encode(local: np.ndarray, index: int) -> np.ndarray:
    """Per-chunk ids 1..n of task `index` as volume-wide fragment ids (0 stays 0)."""
    local = local.astype(np.uint64)
    return np.where(local > 0, local | np.uint64(index << ID_BITS), np.uint64(0))


def _plane(array: np.ndarray, axis: int, at: int) -> np.ndarray:
    return np.ascontiguousarray(np.take(array, at, axis=axis))


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
            inner_u=_encode(u, index),
            inner_v=_encode(v, index),
            inner_sum=sums,
            inner_count=counts,
            **{f"low_{c}": _encode(_plane(local, c, 0), index) for c in range(3)},
            **{f"aff_{c}": _plane(affs[c], c, 0).astype(np.float32) for c in range(3)},
        )
        # the chunk's basins on the planes just outside its faces (see _same_basins)
        for c in range(3):
            for side, at in (("low", inner[c].start - 1), ("high", inner[c].stop)):
                plane = labels[:0, :0, 0]
                if 0 <= at < labels.shape[c]:
                    plane = labels[tuple(at if a == c else inner[a] for a in range(3))]
                arrays[f"shell_{side}_{c}"] = _encode(lut[plane], index)
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
        arrays = {f"shell_{c}": _encode(lut[shell], index) for c, shell in enumerate(shells)}
    fragments = _encode(local, index)
    arrays.update({f"high_{c}": _plane(fragments, c, -1) for c in range(3)})
    write_precomputed(
        Chunk(fragments, core.start, plan.voxel_size, LayerType.SEGMENTATION),
        plan.fragments_path,
        create=False,
    )
    _put_arrays(plan, f"faces/{core}.npz", count=np.int64(count), **arrays)
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
    `_same_basins`); cc mode joins the chunk's ids on its low shell (from phase 1) to the ids
    the lower chunks gave those voxels.
    """
    coords = plan.coords(bbox)
    core = plan.cell(coords)
    if plan.mode == "agglomerate":
        below = [plan.neighbour(coords, -np.eye(3, dtype=int)[c]) for c in range(3)]
    else:
        below = [plan.neighbour(coords, offset) for offset in LOWER_NEIGHBOURS]
    wanted = [core] + [b for b in below if b is not None]
    files = dict(zip(wanted, _require(plan, "faces", wanted, "segment-fragments")))
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
    _put_arrays(plan, f"edges/{core}.npz", fragments=own["count"], **arrays)
    return len(arrays["u"])


def _face_edges(upper: dict, lower: dict, axis: int):
    """Edges across the face between a chunk and the chunk below it along `axis`: contact
    statistics, and which pairs are pieces of one watershed basin cut by the face (forced)."""
    from chunkflow.segmentation.regiongraph import plane_contacts

    u, v, sums, counts = plane_contacts(
        upper[f"low_{axis}"], lower[f"high_{axis}"], upper[f"aff_{axis}"]
    )
    same = _same_basins(
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


def _same_basins(shell_up, rim_down, shell_down, rim_up) -> set:
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
# phase 3: the global merge


def merge(plan: Plan) -> dict:
    """Give every fragment of the volume its object id, from the tasks' edges only."""
    from chunkflow.io.files import list_files, put_files

    start = time.perf_counter()
    present = set(list_files(plan.work_path, "edges/"))
    bboxes = [bbox for _, bbox in plan.tasks()]
    missing = [b for b in bboxes if f"edges/{b}.npz" not in present]
    _unfinished(plan, "segment-edges", "edges", missing)
    # One pass in task order: a task's edges join its fragments to its own and to those of
    # earlier tasks, whose offsets in the dense numbering are known by then.
    offsets = np.zeros(len(bboxes) + 1, dtype=np.uint64)
    columns = {"u": [], "v": [], "sum": [], "count": [], "forced": []}
    for index, bbox in enumerate(bboxes):
        data = _get_arrays(plan, f"edges/{bbox}.npz")
        offsets[index + 1] = offsets[index] + np.uint64(data.pop("fragments"))
        small = offsets[index + 1] < 2**31  # int32 while it can: 10^8 edges are many bytes
        for end in ("u", "v"):
            dense = _dense(data.pop(end), offsets, index, bbox)
            columns[end].append(dense.astype(np.int32) if small else dense)
        for name, values in data.items():
            columns[name].append(values)
    num_fragments = int(offsets[-1])
    node_t = np.int32 if num_fragments < 2**31 else np.int64
    u, v = (np.concatenate(columns.pop(end)).astype(node_t) for end in ("u", "v"))
    num_edges = len(u)
    if plan.mode == "agglomerate":
        from chunkflow.segmentation.regiongraph import mean_affinity_agglomeration

        sums = np.concatenate(columns.pop("sum"))
        contact = np.concatenate(columns.pop("count")).astype(np.float64)
        forced = np.concatenate(columns.pop("forced"))
        objects = mean_affinity_agglomeration(
            u, v, sums, contact, num_fragments, plan.threshold, forced=forced, overwrite=True
        )
    else:
        from chunkflow.segmentation.regiongraph import UnionFind

        sets = UnionFind(num_fragments)
        sets.union(u, v)
        objects = sets.labels()
    num_objects = int(objects.max()) if len(objects) else 0
    summary = {
        "fragments": num_fragments,
        "edges": num_edges,
        "objects": num_objects,
        "seconds": round(time.perf_counter() - start, 3),
    }
    put_files(
        plan.work_path,
        [
            ("merge/ids", objects.astype("<u8").tobytes()),
            ("merge/offsets", offsets.astype("<u8").tobytes()),
        ],
    )
    put_files(plan.work_path, [("merge/summary.json", json.dumps(summary, indent=2).encode())])
    logger.info(
        "segment-merge: %d fragments, %d edges -> %d objects in %.1f s",
        num_fragments,
        num_edges,
        num_objects,
        summary["seconds"],
    )
    return summary


def _dense(ids: np.ndarray, offsets: np.ndarray, index: int, bbox) -> np.ndarray:
    """Fragment ids -> their index in task order (int64); fragments of task `index` and of
    earlier tasks only, whose offsets are known."""
    task = (ids >> np.uint64(ID_BITS)).astype(np.int64)
    local = (ids & LOCAL_MASK).astype(np.int64)
    if len(ids) and (
        task.max() > index
        or local.min() < 1
        or (local > (offsets[task + 1] - offsets[task]).astype(np.int64)).any()
    ):
        raise ChunkflowError(
            f"edges of task {bbox} name fragments that do not exist; rerun segment-fragments "
            "and segment-edges for it"
        )
    return offsets[task].astype(np.int64) + local - 1


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


# ---------------------------------------------------------------------------------------------
# status


def status(plan: Plan) -> dict:
    """How far the job is: tasks done per phase, and whether the merge ran."""
    from chunkflow.io.files import get_file, list_files

    done = {}
    for phase, folder, suffix in (
        ("fragments", "faces", ".npz"),
        ("edges", "edges", ".npz"),
        ("relabel", "relabeled", ""),
    ):
        names = set(list_files(plan.work_path, f"{folder}/"))
        done[phase] = sum(f"{folder}/{b}{suffix}" in names for _, b in plan.tasks())
    summary = get_file(plan.work_path, "merge/summary.json")
    done["merge"] = json.loads(summary) if summary is not None else None
    done["tasks"] = plan.num_tasks
    return done
