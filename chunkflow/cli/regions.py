"""Where the data ends and where to look: `pad` and `random-location`.

Both take part in context negotiation (`chunkflow.context`): `pad` without a size pads to what
the operators after it need (gunpowder's Pad), and `random-location` draws boxes whose
context, as the operators after it ask for it, lies inside the data (gunpowder's
RandomLocation).
"""

from __future__ import annotations

import click

from chunkflow.cli.framework import (
    BBOX,
    PAD_MODES,
    input_option,
    operator,
    output_option,
    seed_option,
    vec3_option,
)
from chunkflow.errors import ChunkflowError


def _pad_context(input_chunk_name, output_chunk_name, margin=None, bbox=None, **_):
    """Padded to a size, the output's base box is the padded one; else the input's."""
    from chunkflow.context import Context, grow_by

    if bbox is not None:
        return Context((input_chunk_name,), (output_chunk_name,), base=lambda _: bbox, fills=True)
    if margin is not None:
        base = grow_by(margin, margin)
        return Context((input_chunk_name,), (output_chunk_name,), base=base, fills=True)
    return Context((input_chunk_name,), (output_chunk_name,), fills=True)


@operator("pad", family="image", context=_pad_context)
@input_option()
@output_option()
@click.option(
    "--mode",
    type=click.Choice(PAD_MODES),
    default="zero",
    show_default=True,
    help="New voxels: zeros, the data's mirror image (about the edge voxel) or its edge voxels.",
)
@vec3_option("-g", "--margin", nonnegative=True, help="Pad this many voxels on every side.")
@click.option("-b", "--bbox", type=BBOX, default=None, help="Pad (or crop) to exactly this box.")
def pad(task, input_chunk_name, output_chunk_name, mode, margin, bbox, request):
    """Extend a chunk past the data's end with zeros, a mirror image or its edge voxels.

    Without --margin or --bbox the chunk is padded to what the operators after `pad` need:
    readers before it read the context where the data has it, and `pad` fills in the rest
    (e.g. `read-h5 ... pad --mode reflect add-affinities` at the volume's border).
    """
    from chunkflow.context import grow_by
    from chunkflow.context import pad as run

    chunk = task.chunk(input_chunk_name)
    if margin is not None and bbox is not None:
        raise ChunkflowError("give --margin or --bbox, not both")
    if output_chunk_name in task.bases:  # the padded box and the context after it
        target = request.box(output_chunk_name, task.bases[output_chunk_name])
    elif bbox is not None:
        target = bbox
    elif margin is not None:
        target = grow_by(margin, margin)(chunk.bbox)
    else:
        raise ChunkflowError(
            f"nothing to pad chunk {input_chunk_name!r} to: give --margin or --bbox, or read it "
            "with a reader in this chain, so that the operators after pad say what they need"
        )
    task[output_chunk_name] = run(chunk, target, mode)


@operator("random-location", family="generate", kind="source")
@vec3_option("-s", "--size", positive=True, required=True, help="Size of each box.")
@click.option("-r", "--roi", type=BBOX, default=None, help="Draw inside this box.")
@click.option(
    "-f",
    "--file",
    "source",
    default=None,
    help="Draw inside the bounds of this HDF5 dataset or zarr/N5 array (with -d).",
)
@click.option("-d", "--dataset", default=None, help="Dataset of --file [default: its only one].")
@click.option(
    "-n", "--count", type=click.IntRange(min=1), default=1, show_default=True, help="Boxes."
)
@seed_option()
@click.option(
    "--mask",
    default=None,
    help="HDF5 or zarr mask: keep only boxes with at least --min-masked of it nonzero.",
)
@click.option("--mask-dataset", default=None, help="Dataset of --mask.")
@click.option(
    "--min-masked",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Fraction of a box the mask must cover.",
)
@click.option(
    "--tries",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Draws per box before giving up on the mask.",
)
def random_location(
    task,
    size,
    roi,
    source,
    dataset,
    count,
    rng,
    mask,
    mask_dataset,
    min_masked,
    tries,
    request,
):
    """Tasks at random boxes of --size inside --roi or a file's bounds (seeded).

    Each box is drawn so that the context the operators after it need (an elastic warp, the
    reach of affinities) lies inside the bounds too: the readers then read real data all
    around. With --mask, boxes where the mask covers less than --min-masked are drawn again.
    """
    from chunkflow.task import Task
    from chunkflow.training.locations import foreground, random_box, read_box, stored_bounds

    if (roi is None) == (source is None):
        raise ChunkflowError("give exactly one of --roi or --file")
    bounds = roi if roi is not None else stored_bounds(source, dataset)
    accept = None
    if mask is not None:

        def accept(box):
            return foreground(read_box(mask, mask_dataset, box), box) >= min_masked

    for _ in range(count):
        yield Task(random_box(bounds, size, rng, request.reads_around, accept, tries))
