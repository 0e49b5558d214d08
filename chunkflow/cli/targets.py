"""Training targets: affinities, grown boundaries and loss weights (`chunkflow.training.targets`).

The wrappers parse options and call the library: affinities and grown boundaries through
`chunkflow.training.margins`, which reads the labels with the context they need.
"""

from __future__ import annotations

import click

from chunkflow.cli.framework import (
    NEIGHBORHOOD,
    about_chunk,
    input_option,
    operator,
    output_box,
    output_option,
    pad_option,
    voxelwise_context,
)


def _affinity_context(
    input_chunk_name, output_chunk_name, neighborhood, mask_output_name, labels_mask_name, **more
):
    from chunkflow.context import Context
    from chunkflow.training.margins import affinity_grow

    if more.get("neighborhood_sign") == "gunpowder":  # p and p + offset: the other way
        neighborhood = [tuple(-v for v in offset) for offset in neighborhood]
    inputs = (input_chunk_name,) + ((labels_mask_name,) if labels_mask_name else ())
    outputs = (output_chunk_name,) + ((mask_output_name,) if mask_output_name else ())
    return Context(inputs, outputs, affinity_grow(neighborhood))


@operator("add-affinities", family="training", context=_affinity_context)
@input_option(help="Name of the label chunk.")
@output_option()
@click.option(
    "-n",
    "--neighborhood",
    type=NEIGHBORHOOD,
    default="1,0,0;0,1,0;0,0,1",
    show_default=True,
    help="Offsets z,y,x separated by ';', in the sign of --neighborhood-sign.",
)
@click.option(
    "--neighborhood-sign",
    type=click.Choice(["chunkflow", "gunpowder"]),
    default="chunkflow",
    show_default=True,
    help="chunkflow: channel c of voxel p links p and p - offset c (waterz); gunpowder: p and "
    "p + offset c.",
)
@click.option(
    "--mask-output-name",
    default=None,
    help="Also store the affinity mask (1 where p - offset is inside the chunk and known).",
)
@click.option(
    "--labels-mask",
    "labels_mask_name",
    default=None,
    help="Chunk whose nonzero voxels have known labels; affinities touching others are masked.",
)
@pad_option()
def add_affinities(
    task,
    input_chunk_name,
    output_chunk_name,
    neighborhood,
    neighborhood_sign,
    mask_output_name,
    labels_mask_name,
    pad_mode,
    request,
):
    """Affinity targets (float32, one channel per offset) from a label chunk.

    Channel c of voxel p is 1 where p and p - offset c carry the same nonzero label (waterz
    convention: the default offsets give the z, y, x affinities that agglomerate reads). The
    labels are read one offset further (context): the output covers the labels' box (the
    reader's box) with real affinities up to its border; where the data ends, --pad decides
    (affinities to padded voxels are masked).
    """
    from chunkflow.training.margins import affinities_with_context
    from chunkflow.training.targets import neighborhood_from

    with about_chunk(input_chunk_name):
        neighborhood = neighborhood_from(neighborhood, neighborhood_sign)
    labels = task.chunk(input_chunk_name)
    labels_mask = task.chunk(labels_mask_name) if labels_mask_name else None
    box = output_box(task, request, output_chunk_name, labels)
    with about_chunk(input_chunk_name):
        affs, mask = affinities_with_context(
            labels, box, neighborhood, pad_mode, labels_mask, input_chunk_name, labels_mask_name
        )
    task[output_chunk_name] = affs
    if mask_output_name:
        task[mask_output_name] = mask


def _boundary_context(input_chunk_name, output_chunk_name, steps, only_xy, **_):
    from chunkflow.context import Context
    from chunkflow.training.margins import boundary_grow

    return Context((input_chunk_name,), (output_chunk_name,), boundary_grow(steps, only_xy))


@operator("grow-boundary", family="training", context=_boundary_context)
@input_option(help="Name of the label chunk.")
@output_option()
@click.option(
    "-s",
    "--steps",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Voxels to grow the boundary by.",
)
@click.option("--only-xy", is_flag=True, help="Grow within each z section only.")
@pad_option()
def grow_boundary(task, input_chunk_name, output_chunk_name, steps, only_xy, pad_mode, request):
    """Set to 0 the voxels within --steps voxels of a boundary between labels (GrowBoundary).

    A voxel keeps its label only if all voxels within city-block distance --steps have it;
    label 0 counts as a label. The labels are read --steps voxels further (context), so a
    boundary just outside the box grows into it; where the data ends, --pad decides (zero:
    a boundary at the data's edge; edge or reflect: none).
    """
    from chunkflow.training.margins import grow_boundary_with_context

    labels = task.chunk(input_chunk_name)
    box = output_box(task, request, output_chunk_name, labels)
    with about_chunk(input_chunk_name):
        task[output_chunk_name] = grow_boundary_with_context(
            labels, box, steps, only_xy, pad_mode, input_chunk_name
        )


@operator("balance-labels", family="training", context=voxelwise_context)
@input_option(help="Name of the binary target chunk (e.g. affinities).")
@output_option()
@click.option("-m", "--mask", "mask_name", default=None, help="Weights are 0 where this is 0.")
@click.option(
    "--clip",
    nargs=2,
    type=float,
    default=(0.05, 0.95),
    show_default=True,
    metavar="LOW HIGH",
    help="Clip the fraction of positives to this range.",
)
def balance_labels(task, input_chunk_name, output_chunk_name, mask_name, clip):
    """Loss weights (float32) balancing positives (> 0.5) and negatives per channel.

    Positives weigh 0.5 / f and negatives 0.5 / (1 - f), f the clipped fraction of positives
    among the masked-in voxels.
    """
    from chunkflow.chunk import check_same_grid
    from chunkflow.context import align
    from chunkflow.training.targets import balance_labels as run

    labels = task.chunk(input_chunk_name)
    mask = task.chunk(mask_name) if mask_name else None
    if mask is not None:
        check_same_grid((mask_name, mask), (input_chunk_name, labels), boxes=None)
        pair = align({input_chunk_name: labels, mask_name: mask}, "balance-labels")
        labels, mask = pair[input_chunk_name], pair[mask_name]
    with about_chunk(input_chunk_name):
        task[output_chunk_name] = run(labels, mask, tuple(clip))
