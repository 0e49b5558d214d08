"""A segmentation job's plan (its grid, parameters and places), its set-up, and the per-task
files that carry work from one phase to the next."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import numpy as np

from chunkflow.chunk import LayerType
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian

logger = logging.getLogger(__name__)

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
    from chunkflow.io.files import put_files
    from chunkflow.io.precomputed import create_info

    chunk_size = Cartesian(chunk_size)
    margin = Cartesian(DEFAULT_MARGIN.get(mode, (1, 1, 1)) if margin is None else margin)
    block_size = default_block_size(chunk_size) if block_size is None else Cartesian(block_size)
    _check_parameters(mode, chunk_size, margin, block_size, connectivity)
    if mode == "agglomerate":
        threshold = 0.7 if threshold is None else threshold
        for name, value in (
            ("threshold", threshold),
            ("aff_threshold_low", aff_threshold_low),
            ("aff_threshold_high", aff_threshold_high),
        ):
            if not 0.0 <= value <= 1.0:
                raise ChunkflowError(f"{name} {value} is out of range: expected [0, 1]")
    bounds, voxel_size = _check_input(mode, input_path, mip, threshold)
    work_path = (work_path or default_work_path(output_path)).rstrip("/")
    _check_new(output_path, work_path)
    plan = Plan(
        mode=mode,
        input_path=input_path,
        mip=mip,
        output_path=output_path,
        work_path=work_path,
        roi=bounds,
        chunk_size=chunk_size,
        voxel_size=voxel_size,
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


def _check_parameters(mode, chunk_size, margin, block_size, connectivity) -> None:
    if mode not in MODES:
        raise ChunkflowError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    if min(chunk_size) <= 0 or min(margin) < 0:
        raise ChunkflowError(
            f"chunk size {tuple(chunk_size)} must be positive and margin {tuple(margin)} >= 0"
        )
    if chunk_size.prod >= 1 << ID_BITS:
        raise ChunkflowError(
            f"chunk size {tuple(chunk_size)} holds 2^32 voxels or more: fragment ids of a "
            "chunk have 32 bits; use smaller chunks"
        )
    if min(block_size) <= 0 or chunk_size % block_size != (0, 0, 0):
        raise ChunkflowError(
            f"block size {tuple(block_size)} does not divide the chunk size "
            f"{tuple(chunk_size)}: every task must write whole blocks"
        )
    if connectivity not in (6, 18, 26) or (mode == "agglomerate" and connectivity != 6):
        raise ChunkflowError(
            f"connectivity {connectivity}: expected 6, 18 or 26, and only in cc mode"
        )
    if mode == "cc" and margin != (1, 1, 1):
        raise ChunkflowError(
            f"margin {tuple(margin)}: cc mode always reads one voxel around each chunk"
        )


def _check_input(mode, input_path, mip, threshold) -> tuple[BoundingBox, Cartesian]:
    """The input's bounds and voxel size at `mip`, once it proved fit for `mode`."""
    from chunkflow.io.precomputed import open_volume, volume_bounds

    vol = open_volume(input_path, mip)
    dtype, channels = np.dtype(vol.dtype), vol.num_channels
    if mode == "agglomerate" and (channels != 3 or dtype not in (np.float32, np.float64, np.uint8)):
        raise ChunkflowError(
            f"{input_path}: {channels} channel(s) of {dtype}; agglomerate mode needs an "
            "affinity map of 3 float32 (or uint8) channels, z, y, x"
        )
    if mode == "cc" and channels != 1:
        raise ChunkflowError(
            f"{input_path}: {channels} channels; cc mode needs one channel (labels, a "
            "binary volume or a map with a threshold)"
        )
    if mode == "cc" and dtype.kind == "f" and threshold is None:
        raise ChunkflowError(
            f"{input_path}: {dtype} values; cc mode needs a threshold for a float map"
        )
    return volume_bounds(input_path, mip), Cartesian.from_xyz(vol.resolution)


def _check_new(output_path: str, work_path: str) -> None:
    from chunkflow.io.files import get_file
    from chunkflow.io.precomputed import volume_exists

    for exists, what in (
        (volume_exists(output_path), f"{output_path} already holds a volume"),
        (get_file(work_path, "plan.json") is not None, f"{work_path} holds a job already"),
    ):
        if exists:
            raise ChunkflowError(
                f"{what}: a segmentation job writes a new volume; choose another output "
                "path or delete the old one"
            )


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


def put_arrays(plan: Plan, name: str, **arrays) -> None:
    from chunkflow.io.files import put_files

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    put_files(plan.work_path, [(name, buffer.getvalue())])


def get_arrays(plan: Plan, name: str) -> dict | None:
    from chunkflow.io.files import get_file

    data = get_file(plan.work_path, name)
    if data is None:
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def require_tasks(plan: Plan, folder: str, bboxes: list, phase: str) -> list[dict]:
    """The per-task files of `bboxes` from `folder`; one error naming all that are missing."""
    found = [get_arrays(plan, f"{folder}/{b}.npz") for b in bboxes]
    unfinished(plan, phase, folder, [b for b, f in zip(bboxes, found) if f is None])
    return found


def unfinished(plan: Plan, phase: str, folder: str, missing: list) -> None:
    if missing:
        shown = ", ".join(map(str, missing[:4]))
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise ChunkflowError(
            f"{phase} has not finished for {len(missing)} task(s): {shown}{more} (nothing in "
            f"{plan.work_path}/{folder}/); run it on every task first"
        )


def encode_ids(local: np.ndarray, index: int) -> np.ndarray:
    """Per-chunk ids 1..n of task `index` as volume-wide fragment ids (0 stays 0)."""
    local = local.astype(np.uint64)
    return np.where(local > 0, local | np.uint64(index << ID_BITS), np.uint64(0))


def take_plane(array: np.ndarray, axis: int, at: int) -> np.ndarray:
    return np.ascontiguousarray(np.take(array, at, axis=axis))
