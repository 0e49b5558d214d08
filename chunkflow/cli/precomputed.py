"""Neuroglancer precomputed operators: cutout, save, create-info."""

from __future__ import annotations

import logging

import click

from chunkflow.cli.framework import (
    DTYPE,
    LAYER_TYPE,
    compress_option,
    input_option,
    mip_option,
    operator,
    output_option,
    reader_context,
    vec3_option,
    volume_path_option,
)
from chunkflow.errors import ChunkflowError, flag_names
from chunkflow.io import PRECOMPUTED_ENCODINGS

logger = logging.getLogger(__name__)


@operator("cutout", family="io", aliases=["load-precomputed"], context=reader_context)
@volume_path_option("Precomputed volume (file://, gs://, s3:// or a local folder).")
@mip_option()
@vec3_option("-s", "--start", "--chunk-start", "start", help="Start (z y x) at this mip.")
@vec3_option("-p", "--stop", "stop", help="Stop (z y x).")
@vec3_option("-z", "--size", "--chunk-size", "size", positive=True, help="Size (z y x).")
@vec3_option(
    "-e",
    "--expand-margin-size",
    nonnegative=True,
    help="Grow the cutout by this margin on every side.",
)
@click.option(
    "--fill-missing/--no-fill-missing",
    default=False,
    show_default=True,
    help="Read missing blocks, and voxels past the volume's edge, as zeros.",
)
@click.option("-l", "--layer-type", type=LAYER_TYPE, default=None)
@click.option(
    "--set-bbox/--no-set-bbox",
    default=False,
    show_default=True,
    help="Make the cutout's bounding box the task's.",
)
@output_option()
def cutout(
    task,
    volume_path,
    mip,
    start,
    stop,
    size,
    expand_margin_size,
    fill_missing,
    layer_type,
    set_bbox,
    output_chunk_name,
    config,
    request,
):
    """Cut out a chunk from a precomputed volume.

    The region is --start with --stop or --size, else the task bounding box; it grows by the
    context that operators downstream need (past the volume's edge only with --fill-missing).
    """
    from chunkflow.io.precomputed_volume import cutout_with_context
    from chunkflow.task_creation.region import box_or

    mip = config.mip if mip is None else mip
    with flag_names(start="--start", stop="--stop", size="--size"):
        bbox = box_or(task.bbox, start, stop, size, what="cutout", margin=expand_margin_size)
    if bbox is None:
        raise ChunkflowError(
            "no region to cut out: give --start with --stop or --size, or "
            "start the chain with create-bbox or generate-tasks"
        )
    wanted = request.box(output_chunk_name, bbox)
    with flag_names(fill_missing="--fill-missing"):
        chunk = cutout_with_context(volume_path, bbox, wanted, mip, fill_missing, layer_type)
    task[output_chunk_name] = chunk
    task.bases[output_chunk_name] = bbox
    if set_bbox:
        task.bbox = bbox


@operator("save", family="io", aliases=["save-precomputed"], effects=("writes", "logs"))
@volume_path_option("Precomputed volume; its info is created from the chunk when missing.")
@input_option()
@mip_option()
@vec3_option(
    "-b",
    "--block-size",
    default=(64, 64, 64),
    positive=True,
    show_default=True,
    help="Storage block (z y x) when the info is created.",
)
@click.option(
    "-e",
    "--encoding",
    type=click.Choice(PRECOMPUTED_ENCODINGS),
    default="raw",
    show_default=True,
    help="Encoding when the info is created.",
)
@click.option(
    "--non-aligned-writes",
    is_flag=True,
    help="Allow chunks not aligned to the storage blocks (unsafe with many workers).",
)
@click.option(
    "-p",
    "--parallel",
    "--nproc",
    "parallel",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Accepted for compatibility; writes use one process.",
)
@click.option(
    "--upload-log/--no-upload-log",
    default=False,
    show_default=True,
    help="Also write the task log as JSON to {volume}/log/{bbox}.json.",
)
@click.option(
    "--create-thumbnail/--no-create-thumbnail",
    default=False,
    show_default=True,
    help="Also write a uint8 thumbnail, downsampled in y and x, into {volume}/thumbnail "
    "(created when missing).",
)
@click.option(
    "--thumbnail-mip",
    type=click.IntRange(min=1),
    default=None,
    help="Mip of the thumbnail [default: the top mip of the thumbnail layer, or 6 when it is "
    "created].",
)
@click.option(
    "--skipped-tasks",
    type=click.Choice(["zeros", "nothing"]),
    default="zeros",
    show_default=True,
    help="What a task skipped to this operator (--skip-to) writes: zeros of the volume's dtype "
    "and channels over the task's bounding box, or nothing.",
)
@compress_option()
def save(
    task, volume_path, input_chunk_name, mip, parallel, upload_log, skipped_tasks, config, **writing
):
    """Write a chunk into a precomputed volume (created if missing).

    A missing volume gets an info made from the chunk: its bounding box, voxel size, dtype,
    channels and layer type. With many workers, create the info first (create-info).

    A task that was skipped to this operator (mask ... --skip-to save) did not compute its
    output: by default zeros are written over the task's bounding box, as chunkflow 1.x did.
    """
    from chunkflow.io.precomputed_volume import save_chunk

    mip = config.mip if mip is None else mip
    if task.resumed_from is not None:
        chunk = _skipped_chunk(task, volume_path, input_chunk_name, mip, skipped_tasks)
    else:
        chunk = task.chunk(input_chunk_name)
    if chunk is not None:
        with flag_names(non_aligned_writes="--non-aligned-writes"):
            thumbnail = save_chunk(chunk, volume_path, mip, name=input_chunk_name, **writing)
        if thumbnail is not None:
            logger.debug("save: thumbnail of %s written to %s at mip %d", chunk.bbox, *thumbnail)
    if upload_log:
        from chunkflow.logs import volume_log_dir, write_task_log

        bbox = chunk.bbox if chunk is not None else _task_bbox(task, input_chunk_name)
        if bbox is not None:
            write_task_log(task, volume_log_dir(volume_path), bbox)


def _task_bbox(task, input_chunk_name):
    """The task's output region: its bbox, else the input chunk's."""
    if task.bbox is not None:
        return task.bbox
    if input_chunk_name in task:
        return task.chunk(input_chunk_name).bbox
    return None


def _skipped_chunk(task, volume_path, input_chunk_name, mip, skipped_tasks):
    """What a task skipped to save writes: zeros over its bbox, or None."""
    from chunkflow.io.precomputed import volume_exists, zero_chunk

    bbox = _task_bbox(task, input_chunk_name)
    if skipped_tasks == "nothing":
        logger.info("save: task %s was skipped (%s); nothing written", bbox, task.resumed_from)
        return None
    if bbox is None:
        logger.warning("save: a skipped task without a bounding box; nothing written")
        return None
    if not volume_exists(volume_path):
        logger.warning(
            "save: task %s was skipped (%s) and %s has no info yet to take the dtype from; "
            "nothing written (create the volume first with create-info or setup-env)",
            bbox,
            task.resumed_from,
            volume_path,
        )
        return None
    logger.info("save: task %s was skipped (%s); writing zeros", bbox, task.resumed_from)
    return zero_chunk(volume_path, bbox, mip)


@operator("create-info", family="io", effects=("writes",))
@volume_path_option()
@input_option(
    default=None, help="Take dtype, channels, size, offset and voxel size from this chunk."
)
@click.option(
    "-c",
    "--num-channels",
    "--channel-num",
    "num_channels",
    type=click.IntRange(min=1),
    default=None,
    help="Number of channels [default: 1].",
)
@click.option(
    "-t",
    "--layer-type",
    type=LAYER_TYPE,
    default=None,
    help="Layer type [default: image].",
)
@click.option(
    "-d",
    "--dtype",
    "--data-type",
    "dtype",
    type=DTYPE,
    default=None,
    help="Data type [default: uint8].",
)
@click.option(
    "-e", "--encoding", type=click.Choice(PRECOMPUTED_ENCODINGS), default="raw", show_default=True
)
@vec3_option("-s", "--voxel-size", positive=True, help="Voxel size (z y x) [default: 1 1 1].")
@vec3_option("-o", "--voxel-offset", help="Voxel offset (z y x) [default: 0 0 0].")
@vec3_option("-z", "--volume-size", positive=True, help="Volume size (z y x) in voxels.")
@vec3_option("-b", "--block-size", default=(64, 64, 64), positive=True, show_default=True)
@vec3_option(
    "-f",
    "--factor",
    default=(1, 2, 2),
    positive=True,
    show_default=True,
    help="Downsampling factor (z y x) between mips.",
)
@click.option("-m", "--max-mip", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--sharded/--unsharded",
    default=False,
    show_default=True,
    help="Store every scale in shards (neuroglancer_uint64_sharded_v1, as igneous makes them), "
    "with parameters chosen from the scale's size and block size.",
)
@click.option(
    "--shard-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="Uncompressed bytes of a shard, about [default: 3500000000].",
)
def create_info(
    task,
    volume_path,
    input_chunk_name,
    num_channels,
    layer_type,
    dtype,
    voxel_size,
    voxel_offset,
    volume_size,
    sharded,
    **layout,
):
    """Create the info of a precomputed volume (from options or from a chunk).

    With --sharded every scale is stored in shards; the log names each scale's shard shape,
    a good task size (or a divisor of it) for writing the volume.
    """
    from chunkflow.io.precomputed import create_info as create
    from chunkflow.io.precomputed_volume import info_parameters

    chunk = task.chunk(input_chunk_name) if input_chunk_name is not None else None
    with flag_names(volume_size="--volume-size", chunk="-i"):
        info = info_parameters(
            chunk, num_channels, layer_type, dtype, voxel_size, voxel_offset, volume_size
        )
    create(volume_path, **info, sharded=sharded, **layout)
    if sharded:
        from chunkflow.io.shard_writes import shard_shapes

        for mip, shape in enumerate(shard_shapes(volume_path)):
            logger.info(
                "create-info: %s mip %d in shards of %s voxels (z y x)",
                volume_path,
                mip,
                " ".join(map(str, shape)),
            )
