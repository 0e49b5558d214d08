"""Operators that create chunks and tasks: create-chunk, create-bbox, generate-tasks."""

from __future__ import annotations

import logging

import click

from chunkflow.cli.framework import (
    BBOX,
    DTYPE,
    LAYER_TYPE,
    VOLUME_PATH,
    mip_option,
    operator,
    output_option,
    parameters,
    vec3_option,
)
from chunkflow.errors import flag_names

logger = logging.getLogger(__name__)

# the parameters of chunkflow.task_creation.region.task_grid, as generate-tasks spells them
GENERATE_FLAGS = dict(
    start="--start",
    stop="--stop",
    size="--size",
    bbox="a bbox string",
    align_to_shards="--align-to-shards",
    volume_path="-v",
    append="--append",
    task_file="--file-path",
)

# generate-tasks' options by the name of the parameter of task_grid they give
GRID_PARAMETERS = dict(
    volume_path="volume_path",
    roi_start="start",
    roi_stop="stop",
    roi_size="size",
    bbox_string="bbox",
    grid_size="grid",
    stride="stride",
    respect_stop="respect_stop",
    aligned_block_size="block_size",
    align_to_shards="align_to_shards",
    task_index_start="index_start",
    task_index_stop="index_stop",
)


@operator("create-chunk", family="generate")
@vec3_option(
    "-s", "--size", positive=True, help="Chunk size [default: the task bbox, else 64 64 64]."
)
@click.option("-t", "--dtype", type=DTYPE, default="uint8", show_default=True, help="Data type.")
@click.option(
    "--pattern",
    type=click.Choice(["sin", "zero", "random"]),
    default="sin",
    show_default=True,
    help="Voxel values.",
)
@vec3_option("--voxel-offset", help="Global offset [default: the task bbox start, else 0 0 0].")
@vec3_option(
    "--voxel-size",
    default=(1, 1, 1),
    positive=True,
    show_default=True,
    help="Physical size of a voxel.",
)
@click.option("-c", "--num-channels", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--layer-type",
    type=LAYER_TYPE,
    default=None,
    help="Layer type (default: from dtype and channels).",
)
@click.option("--seed", type=int, default=None, help="Seed of the random pattern.")
@output_option()
def create_chunk(
    task,
    size,
    dtype,
    pattern,
    voxel_offset,
    voxel_size,
    num_channels,
    layer_type,
    seed,
    output_chunk_name,
):
    """Create a synthetic chunk (sin waves, zeros or seeded random values)."""
    from chunkflow.chunk import Chunk

    if size is None:
        size = task.bbox.shape if task.bbox is not None else (64, 64, 64)
    if voxel_offset is None:
        voxel_offset = task.bbox.start if task.bbox is not None else (0, 0, 0)
    chunk = Chunk.create(
        size, dtype, pattern, voxel_offset, voxel_size, num_channels, layer_type, seed
    )
    task[output_chunk_name] = chunk
    task.set_bbox_if_missing(chunk.bbox)


@operator("create-bbox", family="generate")
@vec3_option("-s", "--start", help="Start (z y x).")
@vec3_option("-p", "--stop", help="Stop (z y x), exclusive.")
@vec3_option("-z", "--size", positive=True, help="Size (z y x), instead of --stop.")
@click.option(
    "-b",
    "--bbox",
    "bbox_string",
    type=BBOX,
    default=None,
    help="A bounding box string z0-z1_y0-y1_x0-x1 instead of start/stop.",
)
def create_bbox(task, start, stop, size, bbox_string):
    """Set the task bounding box from start/stop/size or a bbox string."""
    from chunkflow.task_creation.region import box_from

    with flag_names(**GENERATE_FLAGS):
        task.bbox = box_from(
            start, stop, size, bbox=bbox_string, what="the bounding box", alternative="`bbox`"
        )


@operator(
    "generate-tasks",
    family="generate",
    kind="source",
    effects=("writes", "queue"),
    dry_run="self",
)
@click.option(
    "-l",
    "-v",
    "--volume-path",
    "--layer-path",
    type=VOLUME_PATH,
    default=None,
    help="Take the region from this precomputed volume's bounds.",
)
@mip_option()
@vec3_option("-o", "-s", "--roi-start", help="Start of the region (z y x).")
@vec3_option("-r", "--roi-stop", help="Stop of the region (z y x).")
@vec3_option("-z", "--roi-size", positive=True, help="Size of the region (z y x).")
@click.option(
    "-b",
    "--bounding-box",
    "bbox_string",
    type=BBOX,
    default=None,
    help="The region as a bbox string z0-z1_y0-y1_x0-x1.",
)
@vec3_option("-c", "--chunk-size", positive=True, required=True, help="Size of each task.")
@vec3_option("-g", "--grid-size", positive=True, help="Number of tasks per axis.")
@vec3_option("--stride", positive=True, help="Distance between task starts (default chunk size).")
@click.option(
    "--respect-stop/--respect-chunk-size",
    default=False,
    show_default=True,
    help="Clip tasks at the region stop instead of letting the last one pass it.",
)
@vec3_option(
    "-a",
    "--aligned-block-size",
    positive=True,
    help="Grow the region to multiples of this block size first.",
)
@click.option(
    "--align-to-shards",
    is_flag=True,
    help="Tasks of whole shards of the sharded volume -v at --mip: the region grows to shard "
    "boundaries (clipped to the volume, like the last shards), and --chunk-size must be a "
    "multiple of the shard shape (create-info --sharded logs it).",
)
@click.option("-i", "--task-index-start", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "-p",
    "--task-index-stop",
    type=click.IntRange(min=0),
    default=None,
    help="Only tasks with index in [start, stop).",
)
@click.option(
    "-q",
    "--queue-name",
    default=None,
    help="Send the tasks to this queue instead of streaming them: NAME or sqs://NAME for SQS, "
    "file://PATH or a path with a / for a local queue.",
)
@click.option(
    "-f",
    "--file-path",
    default=None,
    help="Write the tasks to this .npy or .txt file instead of streaming them.",
)
@click.option(
    "--append",
    is_flag=True,
    help="Add the tasks to a queue that already holds messages (without it, such a queue is "
    "refused, so that a rerun does not queue every task twice).",
)
@click.option("--endpoint-url", default=None, help="SQS-compatible endpoint.")
def generate_tasks(
    task, mip, chunk_size, queue_name, file_path, append, endpoint_url, config, **region
):
    """Cut a region into a grid of tasks and stream them down the chain.

    The grid is never built as a whole: a task index range is index arithmetic into it, and
    tasks are streamed to the chain, a queue or a file one at a time.
    """
    from chunkflow.task_creation.dispatch import TaskSink, stream
    from chunkflow.task_creation.region import task_grid

    mip = config.mip if mip is None else mip
    with flag_names(**GENERATE_FLAGS):
        grid = task_grid(chunk_size, mip=mip, **parameters(region, GRID_PARAMETERS))
        sink = TaskSink(queue_name, file_path, endpoint_url, append)
        size = " ".join(map(str, chunk_size))
        logger.info(
            "generate-tasks: %d tasks of size %s over %s", len(grid.tasks), size, grid.region
        )
        if sink.streams:
            yield from stream(grid.tasks, mip)
            return
        for line in sink.send(grid.tasks, config.dry_run):
            logger.info("generate-tasks: %s", line)
