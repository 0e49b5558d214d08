"""Whole-volume segmentation operators: segment-setup, the per-task phases, merge and status.

    chunkflow segment-setup --mode agglomerate -i AFFS -o SEG -c 128 512 512
    chunkflow generate-tasks -v SEG -c 128 512 512 segment-fragments -o SEG
    chunkflow generate-tasks -v SEG -c 128 512 512 segment-edges -o SEG
    chunkflow segment-merge -o SEG
    chunkflow generate-tasks -v SEG -c 128 512 512 segment-relabel -o SEG

The per-task phases take the task's bounding box from generate-tasks, fetch-task or
fetch-task-from-file; see chunkflow.segmentation.blockwise for what each phase does.
"""

from __future__ import annotations

import functools
import logging

import click

from chunkflow.cli.framework import VOLUME_PATH, mip_option, operator, vec3_option
from chunkflow.errors import ChunkflowError

logger = logging.getLogger(__name__)


def _job_options(fn):
    fn = click.option(
        "--work-path",
        type=VOLUME_PATH,
        default=None,
        help="Where the job keeps its intermediate data [default: OUTPUT/blockwise].",
    )(fn)
    return click.option(
        "-o",
        "--output-path",
        type=VOLUME_PATH,
        required=True,
        help="The job's output segmentation volume (made by segment-setup).",
    )(fn)


@functools.lru_cache(maxsize=8)
def _plan(output_path, work_path):
    from chunkflow.segmentation.blockwise import load_plan

    return load_plan(output_path, work_path)


def _bbox(task):
    if task.bbox is None:
        raise ChunkflowError(
            "no task bounding box: start the chain with generate-tasks -v OUTPUT -c CHUNK_SIZE, "
            "fetch-task or fetch-task-from-file"
        )
    return task.bbox


@operator("segment-setup", family="blockwise", effects=("writes",))
@click.option(
    "--mode",
    type=click.Choice(["agglomerate", "cc"]),
    required=True,
    help="agglomerate: affinities -> watershed + mean-affinity agglomeration; "
    "cc: connected components of labels or of a map above --threshold.",
)
@click.option("-i", "--input-path", type=VOLUME_PATH, required=True, help="Input volume.")
@_job_options
@vec3_option("-c", "--chunk-size", positive=True, required=True, help="Size of each task (z y x).")
@mip_option()
@vec3_option(
    "--margin",
    nonnegative=True,
    help="agglomerate: context (z y x) read around each chunk for the watershed "
    "[default: 8 8 8]; cc always reads 1.",
)
@click.option(
    "-t",
    "--threshold",
    type=float,
    default=None,
    help="agglomerate: merge while 1 - mean affinity is below this [default: 0.7]; "
    "cc: foreground is above this (needed for float maps).",
)
@click.option("--aff-threshold-low", type=float, default=0.0001, show_default=True)
@click.option("--aff-threshold-high", type=float, default=0.9999, show_default=True)
@click.option(
    "--connectivity",
    type=click.Choice(["6", "18", "26"]),
    default="6",
    show_default=True,
    help="cc: voxel connectivity.",
)
@vec3_option(
    "-b",
    "--block-size",
    positive=True,
    help="Storage block of the output; must divide the chunk size "
    "[default: per axis the largest divisor of the chunk size up to 64].",
)
@click.option(
    "-e",
    "--encoding",
    type=click.Choice(["compressed_segmentation", "raw", "compresso", "crackle"]),
    default="compressed_segmentation",
    show_default=True,
)
def segment_setup(
    task,
    mode,
    input_path,
    output_path,
    work_path,
    chunk_size,
    mip,
    margin,
    threshold,
    aff_threshold_low,
    aff_threshold_high,
    connectivity,
    block_size,
    encoding,
    config,
):
    """Plan a whole-volume segmentation: create the output and the job's work data.

    Then run segment-fragments, segment-edges (per task), segment-merge (once) and
    segment-relabel (per task) over the chunks of --chunk-size.
    """
    from chunkflow.segmentation.blockwise import setup

    setup(
        mode,
        input_path,
        output_path,
        chunk_size,
        config.mip if mip is None else mip,
        margin,
        threshold,
        aff_threshold_low,
        aff_threshold_high,
        int(connectivity),
        block_size,
        encoding,
        work_path,
    )


@operator("segment-fragments", family="blockwise", effects=("writes",))
@_job_options
def segment_fragments(task, output_path, work_path):
    """Phase 1, per task: label the chunk (with its context) into fragments."""
    from chunkflow.segmentation.blockwise import make_fragments

    count = make_fragments(_plan(output_path, work_path), _bbox(task))
    task.log["fragments"] = count


@operator("segment-edges", family="blockwise", effects=("writes",))
@_job_options
def segment_edges(task, output_path, work_path):
    """Phase 2, per task: the chunk's edges of the fragment graph, across faces too."""
    from chunkflow.segmentation.blockwise import find_edges

    task.log["edges"] = find_edges(_plan(output_path, work_path), _bbox(task))


@operator("segment-merge", family="blockwise", effects=("writes",))
@_job_options
def segment_merge(task, output_path, work_path):
    """Phase 3, once: object ids for every fragment of the volume, from the edges."""
    from chunkflow.segmentation.blockwise import merge

    task.log["merge"] = merge(_plan(output_path, work_path))


@operator("segment-relabel", family="blockwise", effects=("writes",))
@_job_options
def segment_relabel(task, output_path, work_path):
    """Phase 4, per task: write the chunk's object ids into the output volume."""
    from chunkflow.segmentation.blockwise import relabel

    relabel(_plan(output_path, work_path), _bbox(task))


PHASES = ("fragments", "edges", "merge", "relabel")


@operator("segment-status", family="blockwise")
@_job_options
@click.option(
    "--phase",
    type=click.Choice(PHASES),
    default=None,
    help="Only this phase must be complete [default: all of them].",
)
def segment_status(task, output_path, work_path, phase):
    """Print how far a segmentation job is; fails unless every phase (or --phase) is complete."""
    from chunkflow.report import segment_status_report
    from chunkflow.segmentation.blockwise import load_plan, status, unfinished_phases

    plan = load_plan(output_path, work_path)  # never cached: the job moves on
    done = status(plan)
    phases = PHASES if phase is None else (phase,)
    click.echo(segment_status_report(plan, done, phases))
    unfinished = unfinished_phases(done, phases)
    if unfinished:
        raise ChunkflowError(f"the job is not complete: {', '.join(unfinished)} unfinished")
