"""Regions: start/stop/size, a bbox or a volume's bounds at a mip, as one `BoundingBox`."""

from __future__ import annotations

from dataclasses import dataclass

from chunkflow.errors import ParameterError
from chunkflow.geometry import BoundingBox, BoxGrid, Cartesian, grid_bboxes


def _vec(v) -> str:
    return " ".join(str(int(x)) for x in v)


def box_from(start=None, stop=None, size=None, *, bbox=None, what="the region", alternative=None):
    """`bbox`, else the box from `start` with exactly one of `stop` or `size`; never empty.

    `what` names the box in errors; `alternative` says what the caller takes instead.
    """
    if bbox is not None:
        box = bbox
    elif start is None or (stop is None) == (size is None):
        other = f", or {alternative}" if alternative else ""
        raise ParameterError(f"{what} needs `start` with exactly one of `stop` or `size`{other}")
    else:
        box = BoundingBox(start, stop) if stop is not None else BoundingBox.from_delta(start, size)
    if box.is_empty:
        raise ParameterError(f"{what} {box} is empty: stop must be larger than start")
    return box


def box_or(default, start=None, stop=None, size=None, *, what="the region", margin=None):
    """The box from `start` with `stop` or `size` when any of them is given, else `default`
    (which may be None: no box); grown by `margin` on every side when given."""
    if start is None and stop is None and size is None:
        box = None if default is None else box_from(bbox=default, what=what)
    else:
        box = box_from(start, stop, size, what=what)
    return box if box is None or margin is None else box.grow(margin)


def region_at_mip(start, stop=None, size=None, mip: int = 0) -> BoundingBox:
    """The region from `start` with `stop` or `size` in mip 0 voxels, at `mip`."""
    from chunkflow.inference.plan import factor_power

    box = box_from(start, stop, size, alternative="an input volume (`input_path`)")
    factor = factor_power(mip)
    for name, vector in (("`start`", box.start), ("the region stop", box.stop)):
        if any(vector % factor):
            raise ParameterError(
                f"{name} {_vec(vector)} (mip 0) is not divisible by {_vec(factor)}, the factor "
                f"of mip {mip}"
            )
    return BoundingBox(box.start // factor, box.stop // factor)


def grid_region(
    chunk_size, *, bounds=None, start=None, stop=None, size=None, bbox=None, grid=None, stride=None
) -> BoundingBox:
    """The region of a task grid: `bounds` (a volume's), from `start` on when given; else
    `bbox`; else `grid` tasks per axis from `start` (or 0); else `start` with `stop`/`size`."""
    if bounds is not None:
        if start is None:
            return bounds
        end = bounds.stop if size is None else Cartesian(start) + size
        return BoundingBox(start, end if stop is None else stop)
    if bbox is not None:
        return bbox
    if stop is None and size is None and grid is not None:
        extent = Cartesian(stride or chunk_size) * (Cartesian(grid) - 1) + chunk_size
        return BoundingBox.from_delta(start if start is not None else (0, 0, 0), extent)
    return box_from(start, stop, size, what="the region of interest", alternative="`bbox`")


@dataclass(frozen=True)
class TaskGrid:
    """A task grid over `region`; `tasks` is a lazy `BoxGrid` (index range applied)."""

    region: BoundingBox
    tasks: BoxGrid


def task_grid(
    chunk_size,
    *,
    volume_path=None,
    mip=0,
    start=None,
    stop=None,
    size=None,
    bbox=None,
    grid=None,
    stride=None,
    respect_stop=False,
    block_size=None,
    align_to_shards=False,
    index_start=0,
    index_stop=None,
) -> TaskGrid:
    """Tasks of `chunk_size` over a region (`grid_region`; a volume's bounds at `mip`), grown to
    multiples of `block_size`, or to whole shards of the sharded volume (`align_to_shards`)."""
    bounds = None
    if volume_path is not None:
        from chunkflow.io.precomputed import volume_bounds

        bounds = volume_bounds(volume_path, mip)
    region = grid_region(
        chunk_size, bounds=bounds, start=start, stop=stop, size=size, bbox=bbox, grid=grid,
        stride=stride,
    )  # fmt: skip
    if block_size is not None:
        region = region.snap_to_grid(block_size, mode="grow")
    if align_to_shards:
        if volume_path is None:
            raise ParameterError("`align_to_shards` needs the sharded volume (`volume_path`)")
        from chunkflow.io.shard_writes import shard_aligned_region

        region = shard_aligned_region(volume_path, mip, region, chunk_size, stride)
        respect_stop = True  # the last tasks end where the volume (and its last shards) end
    tasks = grid_bboxes(region, chunk_size, stride, grid, respect_stop)
    return TaskGrid(region, tasks[index_start:index_stop])  # index arithmetic: no box is built


# ---------------------------------------------------------------------------------------------
# the region of an inference run


@dataclass(frozen=True)
class InputInfo:
    bounds: BoundingBox  # at the mip
    voxel_size: Cartesian  # at mip 0
    voxel_size_at_mip: Cartesian
    itemsize: int
    num_channels: int


def read_input(path: str, mip: int) -> InputInfo:
    """What an inference run needs to know of its input volume."""
    import numpy as np

    from chunkflow.io.precomputed import open_volume

    vol = open_volume(path, mip)
    bounds = vol.bounds
    return InputInfo(
        bounds=BoundingBox(Cartesian.from_xyz(bounds.minpt), Cartesian.from_xyz(bounds.maxpt)),
        voxel_size=Cartesian.from_xyz([round(v) for v in vol.info["scales"][0]["resolution"]]),
        voxel_size_at_mip=Cartesian.from_xyz([round(v) for v in vol.resolution]),
        itemsize=np.dtype(vol.dtype).itemsize,
        num_channels=int(vol.num_channels),
    )


def inference_region(
    margin, *, source: InputInfo | None = None, input_path=None, start=None, stop=None, size=None,
    mip=0,
) -> BoundingBox:  # fmt: skip
    """Where an inference run writes output (at `mip`): the input's bounds shrunk by the cutout
    `margin`, within the region from `start` with `stop` or `size` (mip 0) when given."""
    explicit = start is not None or stop is not None or size is not None
    if source is None:
        if not explicit:
            raise ParameterError(
                "missing input volume: give `input_path`, or the region with `start` and "
                "`stop` or `size`"
            )
        return region_at_mip(start, stop, size, mip)
    context = source.bounds.grow(-Cartesian(margin))
    if context.is_empty:
        raise ParameterError(
            f"the patch is larger than the region: {input_path} covers {source.bounds} at "
            f"mip {mip}, too little for the cutout margin {_vec(margin)} on each side of a task"
        )
    if not explicit:
        return context
    region = region_at_mip(start, stop, size, mip).intersect(context)
    if region.is_empty:
        raise ParameterError(
            f"the region does not overlap {context}, where {input_path} holds the cutout "
            f"margin {_vec(margin)} around the output"
        )
    return region
