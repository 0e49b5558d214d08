"""Skeleton operators: skeletonize, skeleton-merge."""

from __future__ import annotations

import logging

import click

from chunkflow.cli.framework import (
    NAMES,
    VOLUME_PATH,
    input_option,
    mip_option,
    operator,
    parse_ids,
    vec3_option,
    volume_path_option,
)
from chunkflow.cli.mesh import MESH_FLAGS
from chunkflow.errors import ChunkflowError, flag_names

logger = logging.getLogger(__name__)


@operator("skeletonize", family="mesh", effects=("writes",), dry_run="self")
@input_option()
@click.option(
    "-o",
    "-v",
    "--volume-path",
    type=VOLUME_PATH,
    default=None,
    help="Precomputed segmentation volume; fragments go to its skeleton dir as {id}:{bbox}.",
)
@mip_option()
@vec3_option(
    "--voxel-size",
    positive=True,
    help="Voxel size (z y x) [default: the chunk's; the volume's at --mip if the chunk has 1 1 1].",
)
@click.option(
    "-d",
    "--dust-threshold",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Skip objects with fewer voxels than this in the chunk.",
)
@click.option(
    "--teasar-scale",
    type=click.FloatRange(min=0),
    default=1.5,
    show_default=True,
    help="TEASAR: invalidation radius = scale × boundary distance + const.",
)
@click.option(
    "--teasar-const",
    type=click.FloatRange(min=0),
    default=300,
    show_default=True,
    help="TEASAR: constant of the invalidation radius, physical units.",
)
@click.option("--ids", type=NAMES, default=None, help="Only these ids (comma separated).")
@click.option(
    "--fix-branching/--no-fix-branching",
    default=True,
    show_default=True,
    help="Better branch points, slower.",
)
@click.option(
    "--output-name",
    default="skeletons",
    show_default=True,
    help="Task item holding {id: Skeleton} (world units, x y z).",
)
def skeletonize(
    task,
    input_chunk_name,
    volume_path,
    mip,
    voxel_size,
    ids,
    output_name,
    config,
    **skeletonizing,
):
    """Skeletonize every object of a segmentation chunk (kimimaro TEASAR).

    Vertices are in world units: (voxel + chunk offset) × voxel size. With -o, each object's
    fragment is written as {id}:{bbox}; run skeleton-merge afterwards. Neighbouring chunks
    should overlap by one voxel (generate-tasks --stride = chunk size - 1).
    """
    from chunkflow.mesh.skeleton import SkeletonVolume, skeletonize_for

    mip = config.mip if mip is None else mip
    seg = task.chunk(input_chunk_name)
    target = SkeletonVolume(volume_path, mip) if volume_path else None
    with flag_names(**MESH_FLAGS):
        ids = parse_ids(ids)
        skeletons = skeletonize_for(
            seg, target, voxel_size, input_chunk_name, ids=ids, **skeletonizing
        )
    task[output_name] = skeletons
    if target is None:
        logger.info("skeletonize: %d objects in %s", len(skeletons), seg.bbox)
    elif config.dry_run:
        logger.info("skeletonize: dry run, %d skeletons not written", len(skeletons))
    else:
        target.write_fragments(skeletons, seg.bbox)
        logger.info(
            "skeletonize: %d objects of %s written to %s", len(skeletons), seg.bbox, target.path
        )


@operator("skeleton-merge", family="mesh", aliases=["merge-skeletons"], effects=("writes",))
@volume_path_option("Precomputed segmentation volume holding skeleton fragments.")
@click.option(
    "-p",
    "--prefix",
    default=None,
    help="Only ids starting with these digits ('0' means the prefix 0) [default: all].",
)
@click.option(
    "-d",
    "--dust-threshold",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Drop merged pieces with less cable length than this (physical units).",
)
@click.option(
    "-t",
    "--tick-threshold",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Remove side branches shorter than this (physical units; 0: keep all).",
)
@click.option(
    "--sharded/--unsharded",
    default=False,
    show_default=True,
    help="Write {shard}.shard files (neuroglancer_uint64_sharded_v1) instead of one file per id.",
)
@click.option(
    "--shard",
    "shards",
    multiple=True,
    help="With --sharded: write only this shard (hex; repeatable) [default: all].",
)
@click.option(
    "--shard-bits",
    type=click.IntRange(min=0),
    default=None,
    help="With --sharded [default: sized from the number of objects].",
)
@click.option(
    "--minishard-bits",
    type=click.IntRange(min=0),
    default=None,
    help="With --sharded [default: sized from the number of objects].",
)
def skeleton_merge(
    task,
    volume_path,
    prefix,
    dust_threshold,
    tick_threshold,
    sharded,
    shards,
    shard_bits,
    minishard_bits,
):
    """Merge the {id}:{bbox} fragments of each object into {id}, the skeleton neuroglancer reads.

    Takes no chunk and runs once per task. Jobs with different, non-nested prefixes (1-9, or
    10-99) can run at the same time: each touches only its own ids. With --sharded the
    skeletons go into shard files instead; shard jobs (--shard N) can run at the same time.
    """
    from chunkflow.mesh.skeleton import merge_skeletons, merge_skeletons_sharded

    if not sharded:
        if shards or shard_bits is not None or minishard_bits is not None:
            raise ChunkflowError("--shard, --shard-bits and --minishard-bits need --sharded")
        with flag_names(**MESH_FLAGS):
            task.log["skeleton-merge"] = merge_skeletons(
                volume_path, prefix, dust_threshold, tick_threshold
            )
        return
    if prefix is not None:
        raise ChunkflowError("--prefix splits unsharded merges; with --sharded use --shard")
    task.log["skeleton-merge"] = merge_skeletons_sharded(
        volume_path,
        list(shards) or None,
        dust_threshold,
        tick_threshold,
        shard_bits,
        minishard_bits,
    )
