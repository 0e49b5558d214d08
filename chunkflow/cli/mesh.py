"""Meshing operators: mesh, mesh-manifest, mesh-merge-sharded."""

from __future__ import annotations

import functools
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
from chunkflow.errors import ChunkflowError, flag_names

logger = logging.getLogger(__name__)

# The library's parameters (chunkflow.mesh) as the mesh and skeleton operators' flags.
MESH_FLAGS = dict(
    fmt="--output-format",
    voxel_size="--voxel-size",
    ids="--ids",
    prefix="--prefix",
)


@functools.lru_cache(maxsize=8)
def _target(path, fmt, mip, voxel_size):
    from chunkflow.mesh.mesh import MeshTarget

    return MeshTarget(path, fmt, mip, voxel_size)


@operator("mesh", family="mesh", effects=("writes",))
@input_option()
@click.option(
    "-o",
    "--output-path",
    "--volume-path",
    "output_path",
    type=VOLUME_PATH,
    required=True,
    help="Precomputed segmentation volume, or a folder.",
)
@click.option(
    "-t",
    "--output-format",
    "--format",
    "output_format",
    type=click.Choice(["precomputed", "ply", "obj", "multires"]),
    default="precomputed",
    show_default=True,
    help="precomputed: legacy fragments {id}:0:{bbox}; multires: one {bbox}.frags per task "
    "for mesh-merge-sharded; ply/obj: files in a folder.",
)
@vec3_option(
    "-v",
    "--voxel-size",
    positive=True,
    help="Voxel size (z y x) [default: the volume's at --mip; required for folders].",
)
@mip_option()
@click.option(
    "-s",
    "--simplification-factor",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Target triangle reduction (0: no simplification).",
)
@click.option(
    "-e",
    "--max-simplification-error",
    type=click.FloatRange(min=0),
    default=8.0,
    show_default=True,
    help="Largest vertex displacement, world units.",
)
@click.option(
    "-d",
    "--dust-threshold",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Skip objects smaller than this many voxels.",
)
@click.option("--ids", type=NAMES, default=None, help="Mesh only these ids (comma separated).")
@click.option("--skip-ids", type=NAMES, default=None, help="Do not mesh these ids.")
@click.option(
    "--manifest/--no-manifest",
    default=False,
    show_default=True,
    help="Write {id}:0 manifests too (when one chunk holds whole objects).",
)
def mesh(
    task,
    input_chunk_name,
    output_path,
    output_format,
    voxel_size,
    mip,
    ids,
    skip_ids,
    manifest,
    config,
    **meshing,
):
    """Mesh every object of a segmentation chunk (zmesh) into fragments.

    Precomputed fragments are named {id}:0:{bbox in world units}; run mesh-manifest afterwards.
    With --output-format multires each task writes {bbox}.frags; run mesh-merge-sharded afterwards.
    Neighbouring chunks need one voxel of overlap (generate-tasks --stride = chunk size - 1).
    """
    from chunkflow.mesh.mesh import mesh_chunk, world_bbox

    mip = config.mip if mip is None else mip
    with flag_names(**MESH_FLAGS):
        target = _target(output_path, output_format, mip, voxel_size)
        seg = target.check_chunk(task.chunk(input_chunk_name), input_chunk_name)
        ids, skip_ids = parse_ids(ids), parse_ids(skip_ids, "--skip-ids")
        meshes = mesh_chunk(seg, target.voxel_size, ids=ids, skip_ids=skip_ids, **meshing)
        names = target.write(meshes, world_bbox(seg, target.voxel_size), manifest)
    shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
    logger.info(
        "mesh: %d objects of %s written to %s (%s)", len(meshes), seg.bbox, target.path, shown
    )


@operator("mesh-manifest", family="mesh", effects=("writes",))
@volume_path_option("Precomputed segmentation volume holding mesh fragments.")
@click.option(
    "-p",
    "--prefix",
    default=None,
    help="Only ids starting with these digits ('0' means the prefix 0) [default: all].",
)
@click.option(
    "-d",
    "--digits",
    type=click.IntRange(min=1),
    default=None,
    help="Length of --prefix, checked when given (prefixes split the work).",
)
def mesh_manifest(task, volume_path, prefix, digits):
    """Collect mesh fragments into {id}:0 manifests so neuroglancer shows whole objects.

    Jobs with different, non-nested prefixes (0-9, or 00-99) can run at the same time.
    """
    from chunkflow.mesh.mesh import write_manifests

    if prefix is not None and (not prefix.isdigit() or (digits and len(prefix) != digits)):
        raise ChunkflowError(f"--prefix {prefix!r}: expected {digits or 'some'} decimal digit(s)")
    write_manifests(volume_path, prefix)


@operator("mesh-merge-sharded", family="mesh", effects=("writes",))
@volume_path_option("Precomputed segmentation volume whose mesh dir holds {bbox}.frags files.")
@click.option(
    "--shard",
    "shards",
    multiple=True,
    help="Write only this shard (hex, as in {shard}.shard; repeatable) [default: all].",
)
@click.option(
    "-l",
    "--num-lods",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Levels of detail (fewer when simplification stops losing faces).",
)
@click.option(
    "-f",
    "--lod-factor",
    type=click.IntRange(min=2),
    default=4,
    show_default=True,
    help="Each level keeps 1/FACTOR of the faces of the one before.",
)
@click.option(
    "--vertex-quantization-bits",
    type=click.Choice(["10", "16"]),
    default="16",
    show_default=True,
    help="Bits of each vertex coordinate within its octree cell (neuroglancer reads 10 or 16).",
)
@click.option(
    "--shard-bits",
    type=click.IntRange(min=0),
    default=None,
    help="[default: sized from the number of objects]",
)
@click.option(
    "--minishard-bits",
    type=click.IntRange(min=0),
    default=None,
    help="[default: sized from the number of objects]",
)
def mesh_merge_sharded(
    task,
    volume_path,
    shards,
    num_lods,
    lod_factor,
    vertex_quantization_bits,
    shard_bits,
    minishard_bits,
):
    """Merge per-task fragments into sharded multi-resolution meshes (neuroglancer_multilod_draco).

    Takes no chunk and runs once per task. Every run derives the same sharding from the
    fragment files, so shard jobs (--shard 0, --shard 1, ...) can run at the same time once
    every mesh task is done.
    """
    from chunkflow.mesh.multires import merge_sharded

    with flag_names(**MESH_FLAGS):
        merge_sharded(
            volume_path,
            list(shards) or None,
            num_lods=num_lods,
            factor=lod_factor,
            vertex_quantization_bits=int(vertex_quantization_bits),
            shard_bits=shard_bits,
            minishard_bits=minishard_bits,
        )
