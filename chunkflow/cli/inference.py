"""The inference operator."""

from __future__ import annotations

import functools

import click

from chunkflow.cli.framework import (
    LAYER_TYPE,
    input_option,
    operator,
    output_option,
    pad_option,
    vec3_option,
)
from chunkflow.errors import flag_names

# The library's parameters (chunkflow.inference) as inference's flags, for its errors.
INFERENCE_FLAGS = dict(
    input_patch_size="--input-patch-size",
    output_patch_size="--output-patch-size",
    output_patch_overlap="--output-patch-overlap",
    output_crop_margin="--output-crop-margin",
    mask_output_chunk="--mask-output-chunk",
    patch_num="--patch-num",
    num_input_channels="--num-input-channels",
    num_output_channels="--num-output-channels",
    batch_size="--batch-size",
    mask_myelin_threshold="--mask-myelin-threshold",
    whole_chunk="--whole-chunk",
    autocast="--autocast",
    pin_memory="--pin-memory",
    device="--device",
    num_threads="--num-threads",
    framework="--framework",
    model_path="--convnet-model",
    weight_path="--convnet-weight-path",
)


@functools.lru_cache(maxsize=4)
def _inferencer(convnet_model, convnet_weight_path, **options):
    """Load the model once per operator; later tasks reuse it."""
    from chunkflow.inference.build import build_inferencer

    with flag_names(**INFERENCE_FLAGS):
        return build_inferencer(
            model_path=convnet_model, weight_path=convnet_weight_path, **options
        )


def _inference_context(input_chunk_name, output_chunk_name, read_context=False, **options):
    """With --read-context: the margin the patches and --output-crop-margin cut away, which
    the readers before inference read around the box they were asked for."""
    if not read_context:
        return None
    from chunkflow.context import Context, grow_by
    from chunkflow.inference.grid import PatchGrid

    with flag_names(**INFERENCE_FLAGS):
        margin = PatchGrid.create(
            options["input_patch_size"],
            options["output_patch_size"],
            options["output_patch_overlap"],
            options["output_crop_margin"],
            mask_output_chunk=options["mask_output_chunk"],
            whole_chunk=options["whole_chunk"],
        ).read_margin
    return Context((input_chunk_name,), (output_chunk_name,), grow_by(margin, margin))


@operator("inference", family="inference", context=_inference_context)
@click.option(
    "-m",
    "--convnet-model",
    default=None,
    help="Model file (.py, or a TorchScript archive for pytorch).",
)
@click.option("-w", "--convnet-weight-path", default=None, help="Trained weights (state dict).")
@vec3_option(
    "-s",
    "--input-patch-size",
    "--patch-size",
    "input_patch_size",
    positive=True,
    required=True,
    help="Input patch size.",
)
@vec3_option(
    "-z",
    "--output-patch-size",
    positive=True,
    help="Output patch size [default: input patch size].",
)
@vec3_option(
    "-v",
    "--output-patch-overlap",
    "--patch-overlap",
    "output_patch_overlap",
    nonnegative=True,
    help="Overlap of output patches [default: half a patch].",
)
@vec3_option(
    "--output-crop-margin",
    nonnegative=True,
    help="Crop from the output [default: 0 with --mask-output-chunk, else the overlap].",
)
@vec3_option(
    "-n",
    "--patch-num",
    positive=True,
    help="Expected number of patches; the chunk size must hold exactly these.",
)
@click.option("--num-input-channels", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "-c", "--num-output-channels", type=click.IntRange(min=1), default=3, show_default=True
)
@click.option(
    "-f",
    "--framework",
    type=click.Choice(["identity", "pytorch", "universal", "general"]),
    default="universal",
    show_default=True,
    help="Model backend (general = universal).",
)
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--bump",
    type=click.Choice(["wu", "zung"]),
    default="wu",
    show_default=True,
    help="Blending weight of a patch.",
)
@click.option(
    "--mask-output-chunk/--no-mask-output-chunk",
    default=False,
    show_default=True,
    help="Normalise the chunk borders too, so the whole chunk is output.",
)
@click.option(
    "-d",
    "--dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Output data type.",
)
@click.option(
    "--augment/--no-augment",
    default=False,
    show_default=True,
    help="Average over 16 flips/transposes (test-time augmentation).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu, cuda or cuda:N.",
)
@click.option(
    "--num-threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch [default: torch's choice].",
)
@click.option(
    "--whole-chunk/--patches",
    default=False,
    show_default=True,
    help="Fully convolutional models: one forward pass over the whole chunk, no patches or "
    "blending; the output is cropped by (input - output patch) / 2 and --output-crop-margin "
    "[default 0].",
)
@click.option(
    "--autocast",
    type=click.Choice(["float16", "bfloat16"]),
    default=None,
    help="Run the model under torch.autocast in this dtype [default: float32, on a GPU IEEE "
    "float32, not TensorFloat-32].",
)
@click.option(
    "--pin-memory/--no-pin-memory",
    default=False,
    show_default=True,
    help="CUDA only: gather batches in pinned host memory and copy each one on a side stream "
    "while the previous one computes.",
)
@click.option(
    "-y",
    "--mask-myelin-threshold",
    type=float,
    default=None,
    help="Zero the outputs where the last (myelin) channel exceeds this; drop it.",
)
@click.option(
    "--output-layer-type",
    type=LAYER_TYPE,
    default=None,
    help="[default: affinity_map for 3 channels, else probability_map; identity: image]",
)
@click.option(
    "--read-context/--no-read-context",
    default=False,
    show_default=True,
    help="Have the readers before inference read the margin that the patches and "
    "--output-crop-margin cut away, so the output covers the box they were asked for (a "
    "task's block, whole); where the data ends, --pad decides.",
)
@pad_option()
@input_option()
@output_option()
def inference(
    task, input_chunk_name, output_chunk_name, read_context, pad_mode, request, **options
):
    """ConvNet inference over a chunk of any size, blending overlapping patches.

    The chunk is cut into overlapping patches; their outputs are weighted by a bump and
    normalised so that overlapping weights sum to 1. Integer input is scaled to [0, 1] by its
    dtype range; an all-zero input skips the network. With --whole-chunk a fully convolutional
    model runs once over the whole chunk instead. With --read-context the readers before it
    read the margin the output loses, so the output covers the box they were asked for.
    """
    inferencer = _inferencer(**options)
    chunk = task.chunk(input_chunk_name)
    if read_context and output_chunk_name in task.bases:  # the read box of the write box
        from chunkflow.context import cover

        context = _inference_context(input_chunk_name, output_chunk_name, True, **options)
        write_box = request.box(output_chunk_name, task.bases[output_chunk_name])
        chunk = cover(chunk, context.grow(write_box), pad_mode, input_chunk_name, "inference")
    with flag_names(**INFERENCE_FLAGS):
        task[output_chunk_name] = inferencer(chunk)
    task.log["device"] = str(inferencer.device)
