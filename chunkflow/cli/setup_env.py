"""setup-env: plan a distributed inference run, create its output layers and queue its tasks."""

from __future__ import annotations

import logging

import click

from chunkflow.cli.framework import VOLUME_PATH, mip_option, operator, parameters, vec3_option
from chunkflow.errors import flag_names
from chunkflow.io import PRECOMPUTED_ENCODINGS

logger = logging.getLogger(__name__)

# the options passed on to chunkflow.task_creation.setup.plan_run as they are
PLANNING = (
    "input_path",
    "mip",
    "max_mip",
    "input_patch_size",
    "output_patch_size",
    "output_patch_overlap",
    "output_crop_margin",
    "num_output_channels",
    "num_input_channels",
    "dtype",
    "safety_factor",
    "block_size",
    "voxel_size",
    "sharded",
    "shard_bytes",
)
# the options passed on to chunkflow.task_creation.setup.set_up, by its parameters' names
SET_UP = dict(encoding="encoding", thumbnail_path="thumbnail_path", overwrite_info="overwrite")
# the options chunkflow.report.worker_command writes into the workers' command line
WORKER = dict(
    input_path="input_path",
    layer_path="output_path",
    queue_name="queue_name",
    task_file="task_file",
    thumbnail_path="thumbnail_path",
    framework="framework",
    convnet_model="convnet_model",
    convnet_weight_path="convnet_weight_path",
    visibility_timeout="visibility_timeout",
    endpoint_url="endpoint_url",
)
# the parameters of the library calls, as setup-env spells them
SETUP_FLAGS = dict(
    input_path="-i/--input-layer-path",
    start="--volume-start",
    stop="--volume-stop",
    size="--volume-size",
    max_ram_gb="--max-ram-size",
    output_patch_size="-z/--output-patch-size",
    input_patch_size="--input-patch-size",
    output_crop_margin="--output-crop-margin",
    dtype="--dtype",
    mip="--mip",
    max_mip="--max-mip",
    thumbnail_mip="--thumbnail-mip",
    encoding="--encoding",
    block_size="--block-size",
    sharded="--sharded",
    shard_bytes="--shard-bytes",
    safety_factor="--safety-factor",
    overwrite="--overwrite-info",
    append="--append",
    task_file="--task-file",
)


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
    from chunkflow.image.thumbnail import thumbnail_path_of
    from chunkflow.task_creation.dispatch import TaskSink, stream
    from chunkflow.task_creation.setup import plan_run, set_up

    mip = config.mip if mip is None else mip
    thumbnail_path = thumbnail_path_of(layer_path) if thumbnail else None
    sink = TaskSink(queue_name, task_file, endpoint_url, append)
    with flag_names(**SETUP_FLAGS):
        plan = plan_run(**_planning(locals()))
        done = set_up(
            plan, layer_path, sink, dry_run=config.dry_run, **parameters(locals(), SET_UP)
        )
    for line in done:
        logger.info("setup-env: %s", line)
    click.echo(_report(plan, locals(), config.s3_endpoint))
    if sink.streams:
        yield from stream(plan.bboxes, mip)


def _report(plan, options: dict, s3_endpoint) -> str:
    """What setup-env prints: the plan, its layers and the command line of the workers."""
    from chunkflow.report import setup_report, worker_command

    command = worker_command(plan, s3_endpoint=s3_endpoint, **parameters(options, WORKER))
    layer_path, thumbnail_path = options["layer_path"], options["thumbnail_path"]
    return setup_report(plan, layer_path, thumbnail_path, options["encoding"], command)


def _planning(options: dict) -> dict:
    """setup-env's options as the arguments of `plan_run`."""
    planning = parameters(options, PLANNING)
    planning.update(start=options["volume_start"], stop=options["volume_stop"])
    planning.update(size=options["volume_size"], max_ram_gb=options["max_ram_size"])
    planning["thumbnail_mip"] = options["thumbnail_mip"] if options["thumbnail"] else None
    return planning
