"""setup-env: plan a distributed inference run, create its output layers and queue its tasks."""

from __future__ import annotations

import logging

import click

from chunkflow.cli.framework import VOLUME_PATH, mip_option, operator, vec3_option
from chunkflow.errors import ChunkflowError
from chunkflow.io import PRECOMPUTED_ENCODINGS

logger = logging.getLogger("chunkflow")


@operator(
    "setup-env",
    family="distributed",
    kind="source",
    effects=("writes", "queue"),
    dry_run="self",
)
@click.option(
    "-i",
    "--input-layer-path",
    "--input-volume-path",
    "input_path",
    type=VOLUME_PATH,
    default=None,
    help="Input image volume: the region is its bounds at --mip shrunk by the cutout margin; "
    "its voxel size, dtype and channels are used too.",
)
@vec3_option("--volume-start", help="Start of the output region (z y x) in mip 0 voxels.")
@vec3_option("--volume-stop", help="Stop of the output region (z y x) in mip 0 voxels.")
@vec3_option("-s", "--volume-size", positive=True, help="Size of the output region, mip 0.")
@click.option(
    "-l",
    "--layer-path",
    "--output-layer-path",
    "layer_path",
    type=VOLUME_PATH,
    required=True,
    help="Output layer (its info is created here; the thumbnail goes to {path}/thumbnail).",
)
@click.option(
    "-r",
    "--max-ram-size",
    "--max-ram",
    "max_ram_size",
    type=click.FloatRange(min=0, min_open=True),
    default=15.0,
    show_default=True,
    help="Memory (GB) one worker may use for a task.",
)
@vec3_option(
    "-z", "--output-patch-size", positive=True, help="Output patch size [default: input patch]."
)
@vec3_option("--input-patch-size", positive=True, help="Input patch size [default: output patch].")
@vec3_option(
    "-o",
    "--output-patch-overlap",
    "--patch-overlap",
    "output_patch_overlap",
    nonnegative=True,
    help="Overlap of output patches [default: half a patch].",
)
@vec3_option(
    "--output-crop-margin",
    "--crop-chunk-margin",
    "output_crop_margin",
    nonnegative=True,
    help="Margin cropped off the patch region of a task [default: the overlap].",
)
@click.option(
    "-c",
    "--channel-num",
    "--num-output-channels",
    "num_output_channels",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Output channels (3 for an affinity map).",
)
@click.option(
    "--num-input-channels",
    type=click.IntRange(min=1),
    default=None,
    help="Input channels [default: the input volume's, else 1].",
)
@click.option(
    "-d",
    "--dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Output data type.",
)
@mip_option()
@click.option(
    "-x",
    "--max-mip",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="Highest mip of the output layer; tasks are divisible by 2^(max-mip - mip) in y, x.",
)
@click.option(
    "--thumbnail/--no-thumbnail",
    default=False,
    show_default=True,
    help="Also create a uint8 thumbnail layer at {layer-path}/thumbnail.",
)
@click.option(
    "-b",
    "--thumbnail-mip",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="Mip of the thumbnail.",
)
@click.option(
    "-e",
    "--encoding",
    type=click.Choice(PRECOMPUTED_ENCODINGS),
    default="raw",
    show_default=True,
    help="Encoding of the output layer (raw or fpzip for float maps).",
)
@vec3_option(
    "-v",
    "--voxel-size",
    positive=True,
    help="Voxel size at mip 0 [default: the input volume's, else 40 4 4].",
)
@vec3_option(
    "--block-size",
    positive=True,
    help="Storage block at --mip; tasks become multiples of it [default: chosen from the task].",
)
@click.option(
    "--sharded/--unsharded",
    default=False,
    show_default=True,
    help="Store the output layers in shards (neuroglancer_uint64_sharded_v1, parameters chosen "
    "as create-info --sharded does) that tile the task at every mip it writes, so that each "
    "shard has one writer.",
)
@click.option(
    "--shard-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="With --sharded: uncompressed bytes of a shard, about; a shard never holds more than "
    "a task writes at its mip [default: 3500000000].",
)
@click.option(
    "--safety-factor",
    type=click.FloatRange(min=1),
    default=1.5,
    show_default=True,
    help="The memory estimate times this must fit in --max-ram-size.",
)
@click.option(
    "--overwrite-info/--no-overwrite-info",
    default=False,
    show_default=True,
    help="Replace existing info files that differ from the plan.",
)
@click.option(
    "-q",
    "--queue-name",
    default=None,
    help="Send the tasks to this queue (NAME or sqs://NAME for SQS, file://PATH or a path "
    "with a / for a local queue).",
)
@click.option(
    "--append",
    is_flag=True,
    help="Add the tasks to a queue that already holds messages (without it such a queue is "
    "refused, so that a rerun does not queue every task twice).",
)
@click.option(
    "-f",
    "--task-file",
    "--file-path",
    "task_file",
    default=None,
    help="Write the tasks to this .npy or .txt file.",
)
@click.option(
    "-t",
    "--visibility-timeout",
    type=click.IntRange(min=1),
    default=None,
    help="Printed for fetch-task in the worker command.",
)
@click.option("--endpoint-url", default=None, help="SQS-compatible endpoint.")
@click.option(
    "--framework",
    type=click.Choice(["identity", "pytorch", "universal", "general"]),
    default="universal",
    show_default=True,
    help="Printed for inference in the worker command.",
)
@click.option("--convnet-model", default=None, help="Printed for inference in the worker command.")
@click.option(
    "--convnet-weight-path", default=None, help="Printed for inference in the worker command."
)
def setup_env(
    task,
    input_path,
    volume_start,
    volume_stop,
    volume_size,
    layer_path,
    max_ram_size,
    output_patch_size,
    input_patch_size,
    output_patch_overlap,
    output_crop_margin,
    num_output_channels,
    num_input_channels,
    dtype,
    mip,
    max_mip,
    thumbnail,
    thumbnail_mip,
    encoding,
    voxel_size,
    block_size,
    sharded,
    shard_bytes,
    safety_factor,
    overwrite_info,
    queue_name,
    append,
    task_file,
    visibility_timeout,
    endpoint_url,
    framework,
    convnet_model,
    convnet_weight_path,
    config,
):
    """Plan a distributed inference run: patch number, chunk sizes, layers and tasks.

    From the region (the input volume's bounds at --mip, or --volume-start with --volume-stop
    or --volume-size), the patch sizes and --max-ram-size, choose the patch number of a task so
    that its buffers fit in memory and its output chunk is aligned to the storage blocks and
    divisible by 2^(max-mip - mip) in y and x. Create the output layer info (and the thumbnail
    layer), send the task grid to --queue-name or --task-file (else stream it down the chain),
    and print the worker command on stdout. With --sharded the layers are sharded and every
    task writes whole shards at each of its mips.
    """
    from chunkflow.setup_env import (
        DEFAULT_VOXEL_SIZE,
        create_layers,
        plan_environment,
        read_input,
        region_at_mip,
        thumbnail_path_of,
        worker_command,
    )
    from chunkflow.task import Task

    mip = config.mip if mip is None else mip
    if shard_bytes is not None and not sharded:
        raise ChunkflowError(f"--shard-bytes {shard_bytes} needs --sharded")
    if sharded:
        from chunkflow.io.shards import DEFAULT_SHARD_BYTES

        shard_bytes = shard_bytes or DEFAULT_SHARD_BYTES
    explicit = volume_start is not None or volume_stop is not None or volume_size is not None
    grid = _grid(input_patch_size, output_patch_size, output_patch_overlap, output_crop_margin)
    margin = grid.patch_crop_margin + grid.output_crop_margin
    itemsize, in_channels = 1, 1
    if input_path is not None:
        source = read_input(input_path, mip)
        itemsize, in_channels = source.itemsize, source.num_channels
        context = source.bounds.grow(-margin)
        if context.is_empty:
            raise ChunkflowError(
                f"the patch is larger than the region: {input_path} covers {source.bounds} at "
                f"mip {mip}, too little for the cutout margin {' '.join(map(str, margin))} on "
                "each side of a task"
            )
        region = context
        if explicit:
            region = region_at_mip(volume_start, volume_stop, volume_size, mip).intersect(context)
            if region.is_empty:
                raise ChunkflowError(
                    f"the region does not overlap {context}, where {input_path} holds the "
                    f"cutout margin {' '.join(map(str, margin))} around the output"
                )
        if voxel_size is None:
            voxel_size = source.voxel_size
    elif explicit:
        region = region_at_mip(volume_start, volume_stop, volume_size, mip)
    else:
        raise ChunkflowError(
            "missing input volume: give -i/--input-layer-path, or the region with "
            "--volume-start and --volume-stop or --volume-size"
        )
    if voxel_size is None:
        voxel_size = DEFAULT_VOXEL_SIZE
    plan = plan_environment(
        region,
        mip=mip,
        max_mip=max_mip,
        thumbnail_mip=thumbnail_mip if thumbnail else None,
        input_patch_size=input_patch_size,
        output_patch_size=output_patch_size,
        output_patch_overlap=output_patch_overlap,
        output_crop_margin=output_crop_margin,
        num_output_channels=num_output_channels,
        num_input_channels=num_input_channels or in_channels,
        input_itemsize=itemsize,
        dtype=dtype,
        max_ram_gb=max_ram_size,
        safety_factor=safety_factor,
        block_size=block_size,
        voxel_size=voxel_size,
        shard_bytes=shard_bytes,
    )
    if input_path is not None and plan.voxel_size_at_mip != source.voxel_size_at_mip:
        logger.warning(
            "setup-env: the output voxel size at mip %d is %s, the input's %s",
            mip,
            " ".join(map(str, plan.voxel_size_at_mip)),
            " ".join(map(str, source.voxel_size_at_mip)),
        )
    thumbnail_path = thumbnail_path_of(layer_path) if thumbnail else None
    bboxes = plan.bboxes
    if task_file and not task_file.endswith((".npy", ".txt")):
        raise ChunkflowError(f"--task-file {task_file}: expected a .npy or .txt name")
    if config.dry_run:
        logger.info("setup-env: dry run, no info written and no task sent")
    else:
        queue = None
        if queue_name:  # first: a queue we cannot reach fails before anything is written
            from chunkflow.queues import open_task_queue

            queue = open_task_queue(queue_name, endpoint_url, append)
        for line in create_layers(plan, layer_path, encoding, thumbnail_path, overwrite_info):
            logger.info("setup-env: %s", line)
        if queue is not None:
            queue.send((b.string for b in bboxes), total=len(bboxes))
            logger.info("setup-env: sent %d tasks to %s", len(bboxes), queue_name)
        if task_file:
            from chunkflow.queues import write_task_file

            write_task_file(task_file, bboxes)
            logger.info("setup-env: wrote %d tasks to %s", len(bboxes), task_file)
    command = worker_command(
        plan,
        input_path,
        layer_path,
        queue_name=queue_name,
        task_file=task_file,
        thumbnail_path=thumbnail_path,
        framework=framework,
        convnet_model=convnet_model,
        convnet_weight_path=convnet_weight_path,
        visibility_timeout=visibility_timeout,
        endpoint_url=endpoint_url,
        s3_endpoint=config.s3_endpoint,
    )
    click.echo(report(plan, layer_path, thumbnail_path, encoding, command))
    if queue_name or task_file:
        return
    for bbox in bboxes:
        new = Task(bbox=bbox)
        new.log["mip"] = mip
        yield new


def _grid(input_patch_size, output_patch_size, output_patch_overlap, output_crop_margin):
    from chunkflow.inference.grid import PatchGrid

    if input_patch_size is None and output_patch_size is None:
        raise ChunkflowError("give the patch size: -z/--output-patch-size or --input-patch-size")
    return PatchGrid.create(
        input_patch_size if input_patch_size is not None else output_patch_size,
        output_patch_size,
        output_patch_overlap,
        output_crop_margin,
    )


def report(plan, layer_path, thumbnail_path, encoding, command) -> str:
    """The plan for humans, then the worker command on its own last line."""

    from chunkflow.setup_env import shard_shapes

    def vec(v):
        return " ".join(str(int(x)) for x in v)

    mips = f"mips 0-{plan.max_mip}"
    sharded = ", sharded" if plan.sharded else ""
    lines = [
        f"output layer:         {layer_path} ({plan.dtype}, {plan.num_output_channels} "
        f"channel(s), {encoding}{sharded}, {mips}, block {vec(plan.block_size)} at mip "
        f"{plan.mip})",
    ]
    if plan.sharded:
        shapes = shard_shapes(plan)
        shape = shapes[plan.mip]
        lines.append(
            f"shard shape:          {vec(shape)} at mip {plan.mip} "
            f"({vec(plan.output_chunk_size // shape)} per task, at most {plan.shard_bytes} bytes)"
        )
        if plan.max_mip > plan.mip:
            lines.append(
                "shards by mip:        "
                + "; ".join(
                    f"{level}: {vec(shapes[level])}"
                    for level in range(plan.mip + 1, plan.max_mip + 1)
                )
                + " (each tiles the task there)"
            )
    if thumbnail_path:
        shards = ""
        if plan.sharded:
            shards = f", shards of {vec(shard_shapes(plan, thumbnail=True)[plan.thumbnail_mip])}"
        lines.append(
            f"thumbnail layer:      {thumbnail_path} (uint8, mip {plan.thumbnail_mip}{shards})"
        )
    lines += [
        f"region (mip {plan.mip}):       {plan.requested_region} "
        f"(size {vec(plan.requested_region.shape)})",
        f"output region:        {plan.output_region} (size {vec(plan.output_region.shape)}, "
        f"{plan.coverage:.1%} of the region)",
        f"tasks:                {plan.task_count} = {vec(plan.grid_size)} of "
        f"{vec(plan.output_chunk_size)}",
        f"--patch-num           {vec(plan.patch_num)}",
        f"--input-patch-size    {vec(plan.input_patch_size)}",
        f"--output-patch-size   {vec(plan.output_patch_size)}",
        f"--output-patch-overlap {vec(plan.output_patch_overlap)}",
        f"--output-crop-margin  {vec(plan.output_crop_margin)}",
        f"--expand-margin-size  {vec(plan.expand_margin_size)} (cutout)",
        f"input chunk size:     {vec(plan.input_chunk_size)}",
        f"output chunk size:    {vec(plan.output_chunk_size)} (the task bbox; divisible by "
        f"{vec(plan.downsample_factor)})",
        f"memory per task:      {plan.memory_bytes / 1e9:.3g} GB x {plan.safety_factor:g} = "
        f"{plan.memory_with_safety / 1e9:.3g} GB <= {plan.max_ram_bytes / 1e9:g} GB",
        f"voxel utilization:    {plan.efficiency:.2f}",
        "worker command:",
        command,
    ]
    return "\n".join(lines)
