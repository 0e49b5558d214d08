"""Segmentation and evaluation operators."""

from __future__ import annotations

import json
import logging

import click

from chunkflow.cli.framework import (
    NAMES,
    chunks_on_one_grid,
    input_option,
    mip_option,
    operator,
    output_option,
    parse_ids,
    volume_path_option,
)
from chunkflow.errors import ChunkflowError, flag_names

logger = logging.getLogger(__name__)


class ScoringFunctionType(click.ParamType):
    """A waterz scoring function, parsed: only its documented grammar reaches the compiler."""

    name = "function"

    def convert(self, value, param, ctx):
        from chunkflow.segmentation.agglomerate import parse_scoring_function

        try:
            return parse_scoring_function(value)
        except ChunkflowError as err:
            self.fail(str(err), param, ctx)


@operator("threshold", family="segmentation")
@input_option()
@output_option()
@click.option(
    "-t",
    "--threshold",
    type=float,
    default=0.5,
    show_default=True,
    help="Voxels above this become 1.",
)
def threshold(task, input_chunk_name, output_chunk_name, threshold):
    """Binarise a map: 1 above the threshold, 0 elsewhere (uint8)."""
    from chunkflow.segmentation.labels import threshold as run

    task[output_chunk_name] = run(task.chunk(input_chunk_name), threshold)


@operator("connected-components", family="segmentation", aliases=["cc"])
@input_option()
@output_option()
@click.option(
    "-t",
    "--threshold",
    type=float,
    default=None,
    help="Foreground is above this; without it the input is a label map.",
)
@click.option(
    "-c", "--connectivity", type=click.Choice(["6", "18", "26"]), default="6", show_default=True
)
def connected_components(task, input_chunk_name, output_chunk_name, threshold, connectivity):
    """Label connected components (cc3d); output uint32 ids 1..N."""
    from chunkflow.segmentation.labels import connected_components as run

    with flag_names(threshold="--threshold", connectivity="--connectivity"):
        task[output_chunk_name] = run(task.chunk(input_chunk_name), threshold, int(connectivity))


def _affinity_options(fn):
    for decorator in reversed(
        [
            click.option(
                "--aff-threshold-low",
                type=float,
                default=0.0001,
                show_default=True,
                help="Watershed: affinities below are boundaries.",
            ),
            click.option(
                "--aff-threshold-high",
                type=float,
                default=0.9999,
                show_default=True,
                help="Watershed: affinities above are inside one object.",
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


# The agglomeration's parameters as the command line spells them.
AFFINITY_FLAGS = dict(
    threshold="--threshold",
    aff_threshold_low="--aff-threshold-low",
    aff_threshold_high="--aff-threshold-high",
)


@operator("agglomerate", family="segmentation")
@input_option()
@output_option()
@click.option(
    "-t",
    "--threshold",
    type=float,
    default=0.7,
    show_default=True,
    help="Merge regions while 1 - mean affinity is below this.",
)
@_affinity_options
@click.option(
    "-s",
    "--scoring-function",
    type=ScoringFunctionType(),
    default=None,
    help="waterz scoring function, e.g. 'OneMinus<HistogramQuantileAffinity<RegionGraphType, "
    "50, ScoreValue, 256>>'; only waterz's grammar is accepted (see the README) "
    "[default: mean affinity].",
)
@click.option(
    "-f",
    "--fragments-chunk-name",
    default=None,
    help="Agglomerate these fragments instead of running the watershed.",
)
@click.option(
    "--keep-fragments",
    "fragments_output",
    default=None,
    help="Also store the watershed fragments under this name.",
)
def agglomerate(
    task,
    input_chunk_name,
    output_chunk_name,
    threshold,
    aff_threshold_low,
    aff_threshold_high,
    scoring_function,
    fragments_chunk_name,
    fragments_output,
):
    """Watershed plus mean-affinity agglomeration of an affinity map (waterz).

    Affinities: (3, z, y, x), channel order z, y, x; channel c of voxel p links p and p - e_c.
    """
    from chunkflow.segmentation.agglomerate import agglomerate as run

    affs, fragments = task.chunk(input_chunk_name), None
    if fragments_chunk_name:
        fragments, affs = chunks_on_one_grid(task, fragments_chunk_name, input_chunk_name)
    keep, limits = fragments_output is not None, (aff_threshold_low, aff_threshold_high)
    with flag_names(**AFFINITY_FLAGS, affs=input_chunk_name, fragments=fragments_chunk_name):
        result = run(affs, threshold, *limits, scoring_function, fragments, keep)
    if fragments_output is not None:
        task[output_chunk_name], task[fragments_output] = result
    else:
        task[output_chunk_name] = result


@operator("watershed", family="segmentation")
@input_option()
@output_option()
@_affinity_options
def watershed(task, input_chunk_name, output_chunk_name, aff_threshold_low, aff_threshold_high):
    """Watershed fragments of an affinity map (waterz), without agglomeration."""
    from chunkflow.segmentation.agglomerate import watershed as run

    with flag_names(**AFFINITY_FLAGS, affs=input_chunk_name):
        task[output_chunk_name] = run(
            task.chunk(input_chunk_name), aff_threshold_low, aff_threshold_high
        )


@operator("evaluate-segmentation", family="segmentation", effects=("writes",), dry_run="self")
@click.option("-s", "--segmentation-chunk-name", default="seg", show_default=True)
@click.option("-g", "--groundtruth-chunk-name", default="gt", show_default=True)
@click.option(
    "-r",
    "--result-name",
    default="evaluation",
    show_default=True,
    help="Task item (and log entry) holding the metrics.",
)
@click.option("-o", "--output", default=None, help="Also write the metrics to this JSON file.")
def evaluate_segmentation(
    task, segmentation_chunk_name, groundtruth_chunk_name, result_name, output, config
):
    """Compare a segmentation with ground truth: Rand and VOI split/merge.

    Ground-truth label 0 is ignored; VOI is in bits; split = H(seg|gt), merge = H(gt|seg).
    Under --dry-run the metrics are printed but not written to --output.
    """
    from chunkflow.segmentation.evaluate import evaluate_segmentation as run
    from chunkflow.segmentation.evaluate import format_metrics

    seg, gt = chunks_on_one_grid(task, segmentation_chunk_name, groundtruth_chunk_name)
    metrics = run(seg.array, gt.array)
    click.echo(format_metrics(metrics))
    task[result_name] = metrics
    task.log[result_name] = metrics
    if output and config.dry_run:
        logger.info("evaluate-segmentation: dry run, %s not written", output)
    elif output:
        from chunkflow.io.files import atomic_output

        with atomic_output(output) as tmp, open(tmp, "w") as f:
            json.dump(metrics, f, indent=2)


@operator("mask", family="segmentation")
@input_option(multiple=True)
@output_option(default=None, multiple=True, help="Names of the masked chunks [default: -i].")
@volume_path_option("Mask volume.")
@mip_option()
@click.option(
    "--chunk-mip",
    type=click.IntRange(min=0),
    default=None,
    help="Mip of the chunks [default: global --mip].",
)
@click.option(
    "--inverse/--no-inverse",
    default=False,
    show_default=True,
    help="Zero where the mask is nonzero instead.",
)
@click.option("--fill-missing/--no-fill-missing", default=False, show_default=True)
@click.option(
    "--check-all-zero",
    is_flag=True,
    help="Leave the chunks as they are; only skip the task if masking zeroes all.",
)
@click.option(
    "--skip-to",
    default=None,
    help="Skip the task if masking zeroes all, resuming at this operator (the chunks are "
    "masked unless --check-all-zero).",
)
def mask(
    task,
    input_chunk_name,
    output_chunk_name,
    volume_path,
    mip,
    chunk_mip,
    inverse,
    fill_missing,
    check_all_zero,
    skip_to,
    config,
):
    """Zero chunks where a (possibly coarser) mask volume is 0, or with --check-all-zero skip
    the task when the mask would zero all of it.

    Without --check-all-zero or --skip-to a chunk the mask zeroes entirely goes on as zeros,
    so a `save` after it writes them (as chunkflow 1.x did); nothing is skipped.
    """
    from chunkflow.segmentation.mask import MaskVolume

    chunk_mip = config.mip if chunk_mip is None else chunk_mip
    outputs = output_chunk_name or input_chunk_name
    if len(outputs) != len(input_chunk_name):
        raise ChunkflowError("-o needs as many names as -i")
    chunks = task.chunks(input_chunk_name)
    volume = MaskVolume(volume_path, chunk_mip, mip, fill_missing)
    with flag_names(fill_missing="--fill-missing"):
        masked = volume.apply(chunks, inverse, check_all_zero, input_chunk_name)
    if masked is None:
        task.skip(f"mask {volume_path} covers all of the chunk", to=skip_to)
        return
    if not check_all_zero:
        task.update(zip(outputs, masked))
    if (check_all_zero or skip_to) and not any(c.array.any() for c in masked):
        task.skip("the masked chunks are all zero", to=skip_to)


@operator("mask-out-objects", family="segmentation")
@input_option()
@output_option()
@click.option(
    "-d",
    "--dust-size-threshold",
    "--dust-threshold",
    "dust_threshold",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Remove objects smaller than this many voxels.",
)
@click.option(
    "-s",
    "--selected-obj-ids",
    "--keep-ids",
    "selected",
    type=NAMES,
    default=None,
    help="Keep only these ids (comma separated).",
)
@click.option("--remove-ids", type=NAMES, default=None, help="Remove these ids (comma separated).")
def mask_out_objects(
    task, input_chunk_name, output_chunk_name, dust_threshold, selected, remove_ids
):
    """Remove small objects, or keep or remove selected ids."""
    from chunkflow.segmentation.labels import mask_out_objects as run

    chunk = task.chunk(input_chunk_name)
    if chunk.dtype.kind not in "iu":
        raise ChunkflowError(f"{input_chunk_name!r} is {chunk.dtype}, not an integer segmentation")
    task[output_chunk_name] = run(
        chunk,
        dust_threshold,
        parse_ids(selected, "--keep-ids"),
        parse_ids(remove_ids, "--remove-ids"),
    )


@operator("remap", family="segmentation", aliases=["renumber"])
@input_option()
@output_option()
@click.option(
    "--start",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="First new id (0 stays 0).",
)
def remap(task, input_chunk_name, output_chunk_name, start):
    """Renumber a segmentation to consecutive ids."""
    from chunkflow.segmentation.labels import renumber

    chunk = task.chunk(input_chunk_name)
    if chunk.dtype.kind not in "iu":
        raise ChunkflowError(f"{input_chunk_name!r} is {chunk.dtype}, not an integer segmentation")
    task[output_chunk_name], _ = renumber(chunk, start)
