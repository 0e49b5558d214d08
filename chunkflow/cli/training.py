"""Training operators: affinity targets, grown boundaries, loss weights and augmentations.

The wrappers parse options and call `chunkflow.training`. A random operator builds its random
generator once per command line from `--seed` (default: a fresh random seed) and draws from
it task after task, so a run with a fixed seed is repeatable.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import click

from chunkflow.cli.framework import (
    AXES,
    NAMES,
    NEIGHBORHOOD,
    input_option,
    operator,
    output_option,
    vec3_option,
)
from chunkflow.errors import ChunkflowError

PROBABILITY = click.FloatRange(0.0, 1.0)
PAD_MODES = ("zero", "reflect", "edge")  # chunkflow.context.PAD_MODES, without importing numpy


def pad_option():
    """`--pad`: what to do where the data ends before the context an operator needs."""
    return click.option(
        "--pad",
        "pad_mode",
        type=click.Choice(PAD_MODES),
        default=None,
        help="Where the data ends before the context this operator needs, pad it with zeros, "
        "its mirror image or its edge voxels  [default: refuse, naming the box needed]",
    )


def _voxelwise(input_chunk_name, output_chunk_name, mask_name=None, **_):
    """The context of an operator voxel by voxel: what its output needs, its input needs."""
    from chunkflow.context import Context

    inputs = (input_chunk_name,) + ((mask_name,) if mask_name else ())
    return Context(inputs, (output_chunk_name,))


def _joint(input_chunk_name, output_chunk_name, **_):
    """The context of a transform of several chunks together: they cover the same voxels."""
    from chunkflow.context import Context

    return Context(tuple(input_chunk_name), tuple(output_chunk_name or input_chunk_name))


def _write_box(task, request, output, chunk):
    """The box an operator's output covers: its base box grown by what the operators after it
    need, when a reader upstream read with context; else the input chunk's box."""
    base = task.bases.get(output)
    return chunk.bbox if base is None else request.box(output, base)


def seed_option():
    """`--seed`, delivered as a `numpy.random.Generator` made once per command line."""

    def to_rng(ctx, param, value):
        import numpy as np

        return np.random.default_rng(value)

    return click.option(
        "--seed",
        "rng",
        type=click.IntRange(min=0),
        default=None,
        callback=to_rng,
        help="Seed of the random generator [default: random]; a fixed seed repeats the run.",
    )


@contextmanager
def _about(name: str):
    """Prefix library errors with the chunk they concern."""
    try:
        yield
    except ChunkflowError as err:
        if str(err).startswith(f"chunk {name!r}"):
            raise
        raise ChunkflowError(f"chunk {name!r}: {err}") from err


def _outputs(inputs, outputs):
    outputs = outputs or inputs
    if len(outputs) != len(inputs):
        raise ChunkflowError(
            f"-o names {len(outputs)} chunk(s) ({','.join(outputs)}) but -i names "
            f"{len(inputs)} ({','.join(inputs)})"
        )
    return outputs


def _affinity_context(
    input_chunk_name, output_chunk_name, neighborhood, mask_output_name, labels_mask_name, **more
):
    from chunkflow.context import Context, affinity_grow

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
    from chunkflow.context import affinities_with_context
    from chunkflow.training.targets import neighborhood_from

    with _about(input_chunk_name):
        neighborhood = neighborhood_from(neighborhood, neighborhood_sign)
    labels = task.chunk(input_chunk_name)
    labels_mask = task.chunk(labels_mask_name) if labels_mask_name else None
    box = _write_box(task, request, output_chunk_name, labels)
    with _about(input_chunk_name):
        affs, mask = affinities_with_context(
            labels, box, neighborhood, pad_mode, labels_mask, input_chunk_name, labels_mask_name
        )
    task[output_chunk_name] = affs
    if mask_output_name:
        task[mask_output_name] = mask


def _boundary_context(input_chunk_name, output_chunk_name, steps, only_xy, **_):
    from chunkflow.context import Context, boundary_grow

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
    from chunkflow.context import grow_boundary_with_context

    labels = task.chunk(input_chunk_name)
    box = _write_box(task, request, output_chunk_name, labels)
    with _about(input_chunk_name):
        task[output_chunk_name] = grow_boundary_with_context(
            labels, box, steps, only_xy, pad_mode, input_chunk_name
        )


@operator("balance-labels", family="training", context=_voxelwise)
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
    with _about(input_chunk_name):
        task[output_chunk_name] = run(labels, mask, tuple(clip))


@operator("simple-augment", family="training", context=_joint)
@input_option(default="image,labels", multiple=True)
@output_option(default=None, multiple=True, help="Names of the outputs [default: -i].")
@seed_option()
@click.option(
    "--mirror-axes",
    type=AXES,
    default="0,1,2",
    show_default=True,
    help="Axes (0=z, 1=y, 2=x) each flipped with probability 1/2; '' for none.",
)
@click.option(
    "--transpose-axes",
    "--transpose-only",
    "transpose_axes",
    type=AXES,
    default="1,2",
    show_default=True,
    help="Axes randomly permuted among themselves (equal sizes needed); '' for none.",
)
def simple_augment(
    task, input_chunk_name, output_chunk_name, rng, mirror_axes, transpose_axes, request
):
    """Random mirror and transpose, the same for all chunks (raw, labels, masks).

    Chunks with different boxes are cropped to the world region they share. Affinity maps are
    refused: compute affinities after augmenting the labels.
    """
    from chunkflow.context import align
    from chunkflow.training.augment import simple_augment as run

    outputs = _outputs(input_chunk_name, output_chunk_name)
    chunks = align(dict(zip(input_chunk_name, task.chunks(input_chunk_name))), "simple-augment")
    if all(output in task.bases for output in outputs):  # read with context: clipped unequally?
        chunks = _equal_sizes(
            chunks, transpose_axes, [request.box(o, task.bases[o]) for o in outputs]
        )
    result = run(chunks, rng, mirror_axes, transpose_axes)
    for name, output in zip(input_chunk_name, outputs):
        task[output] = result[name]


def _equal_sizes(chunks, axes, wanted):
    """Chunks read with context but clipped by the data's end: the part with equal sizes
    along the transposed axes, centred on what the operators after need."""
    from chunkflow.context import equal_sizes

    around = wanted[0]
    for box in wanted[1:]:
        around = around.union(box)
    box = equal_sizes(next(iter(chunks.values())).bbox, axes, around)
    return {name: chunk if chunk.bbox == box else chunk.crop(box) for name, chunk in chunks.items()}


ELASTIC_OPTIONS = (
    "control_point_spacing",
    "jitter_sigma",
    "rotation_interval",
    "prob_slip",
    "prob_shift",
    "max_misalign",
)


def elastic_options(fn):
    """The options of the elastic transform (elastic-augment and train share them)."""
    for decorator in reversed(
        [
            vec3_option(
                "--control-point-spacing",
                default=None,
                positive=True,
                help="Voxels between control points of the random displacement [default: 40 "
                "in y and x and the same world distance along z: 4 40 40 for 40x4x4 nm "
                "voxels, 40 40 40 for isotropic ones].",
            ),
            click.option(
                "--jitter-sigma",
                nargs=3,
                type=click.FloatRange(min=0),
                default=(0.0, 2.0, 2.0),
                show_default=True,
                metavar="Z Y X",
                help="Standard deviation (voxels) of the control point displacements.",
            ),
            click.option(
                "--rotation-interval",
                nargs=2,
                type=float,
                default=(0.0, 90.0),
                show_default=True,
                metavar="LOW HIGH",
                help="Rotation in the yx plane, uniform in this interval (unit: --rotation-unit).",
            ),
            click.option(
                "--rotation-unit",
                type=click.Choice(["degrees", "radians"]),
                default="degrees",
                show_default=True,
                help="Unit of --rotation-interval (gunpowder's ElasticAugment takes radians).",
            ),
            click.option(
                "--prob-slip",
                type=PROBABILITY,
                default=0.0,
                show_default=True,
                help="Per z section, probability that it alone shifts in y/x.",
            ),
            click.option(
                "--prob-shift",
                type=PROBABILITY,
                default=0.0,
                show_default=True,
                help="Per z section, probability that it and all following sections shift.",
            ),
            click.option(
                "--max-misalign",
                type=click.IntRange(min=0),
                default=0,
                show_default=True,
                help="Largest slip or shift, voxels.",
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


def elastic_kwargs(options: dict) -> dict:
    """Pop the elastic options from parsed CLI options as ElasticTransform.random arguments
    (the rotation interval in radians, converted from degrees unless given in radians)."""
    kwargs = {name: options.pop(name) for name in ELASTIC_OPTIONS}
    unit = options.pop("rotation_unit")
    if kwargs["control_point_spacing"] is not None:  # None: by the data's voxel size
        kwargs["control_point_spacing"] = tuple(kwargs["control_point_spacing"])
    kwargs["jitter_sigma"] = tuple(kwargs["jitter_sigma"])
    if unit == "degrees":
        kwargs["rotation_interval"] = tuple(math.radians(a) for a in kwargs["rotation_interval"])
    else:
        kwargs["rotation_interval"] = tuple(float(a) for a in kwargs["rotation_interval"])
    return kwargs


def _elastic_context(input_chunk_name, output_chunk_name, output_size, **options):
    from chunkflow.context import Context, centred, elastic_margin, grow_by

    kwargs = elastic_kwargs(dict(options))

    def grow(box):
        margin = elastic_margin(
            box.shape,
            kwargs["jitter_sigma"],
            kwargs["rotation_interval"],
            kwargs["max_misalign"],
            kwargs["prob_slip"] + kwargs["prob_shift"] > 0,
        )
        return grow_by(margin, margin)(box)

    outputs = tuple(output_chunk_name or input_chunk_name)
    return Context(tuple(input_chunk_name), outputs, grow, centred(output_size))


@operator("elastic-augment", family="training", context=_elastic_context)
@input_option(default="image,labels", multiple=True)
@output_option(default=None, multiple=True, help="Names of the outputs [default: -i].")
@seed_option()
@elastic_options
@vec3_option(
    "--output-size",
    positive=True,
    help="Output size, centred in the input box (the box the readers were asked for) "
    "[default: the input size].",
)
@click.option(
    "--nearest",
    type=NAMES,
    default=None,
    help="Chunks to resample with nearest neighbour besides segmentations (e.g. uint8 masks).",
)
@pad_option()
def elastic_augment(
    task,
    input_chunk_name,
    output_chunk_name,
    rng,
    output_size,
    nearest,
    pad_mode,
    request,
    **options,
):
    """Random smooth warp, rotation and section misalignment, the same for all chunks.

    Segmentations are resampled with nearest neighbour, images linearly. The output covers the
    box the readers upstream were asked for (or --output-size centred in it), and they read
    the context the warp needs around it, so it holds real data. Chunks with different boxes
    are cropped to the world region they share. A draw that needs voxels past the data's end
    is drawn again (at most 20 draws); then --pad decides.
    """
    from chunkflow.context import elastic_with_context

    outputs = _outputs(input_chunk_name, output_chunk_name)
    chunks = dict(zip(input_chunk_name, task.chunks(input_chunk_name)))
    boxes = None
    if all(output in task.bases for output in outputs):
        boxes = {
            name: request.box(output, task.bases[output])
            for name, output in zip(input_chunk_name, outputs)
        }
    result = elastic_with_context(
        chunks, rng, boxes, output_size, nearest or (), pad_mode, **elastic_kwargs(options)
    )
    for name, output in zip(input_chunk_name, outputs):
        task[output] = result[name]


def _clip_option():
    return click.option(
        "--clip/--no-clip",
        default=True,
        show_default=True,
        help="Clip to [0, 1] in normalised units (integer images are always clipped).",
    )


@operator("intensity-augment", family="training", context=_voxelwise)
@input_option()
@output_option()
@seed_option()
@click.option(
    "--scale", nargs=2, type=float, default=(0.9, 1.1), show_default=True, metavar="MIN MAX"
)
@click.option(
    "--shift", nargs=2, type=float, default=(-0.1, 0.1), show_default=True, metavar="MIN MAX"
)
@click.option("--z-section-wise", is_flag=True, help="Draw scale and shift per z section.")
@_clip_option()
def intensity_augment(
    task, input_chunk_name, output_chunk_name, rng, scale, shift, z_section_wise, clip
):
    """Scale and shift image intensities around the mean: mean + (x - mean) * scale + shift.

    In normalised units (integer images by dtype range); the dtype is kept.
    """
    from chunkflow.training.intensity import intensity_augment as run

    image = task.chunk(input_chunk_name)
    with _about(input_chunk_name):
        task[output_chunk_name] = run(image, rng, tuple(scale), tuple(shift), z_section_wise, clip)


@operator("noise-augment", family="training", context=_voxelwise)
@input_option()
@output_option()
@seed_option()
@click.option(
    "--mode",
    type=click.Choice(["gaussian", "s&p", "salt-and-pepper", "poisson", "speckle"]),
    default="gaussian",
    show_default=True,
)
@click.option(
    "--var",
    type=click.FloatRange(min=0),
    default=0.01,
    show_default=True,
    help="Noise variance (gaussian, speckle).",
)
@click.option(
    "--amount",
    type=PROBABILITY,
    default=0.05,
    show_default=True,
    help="Fraction of voxels replaced (s&p).",
)
@_clip_option()
def noise_augment(task, input_chunk_name, output_chunk_name, rng, mode, var, amount, clip):
    """Add random noise to an image, in normalised units; the dtype is kept."""
    from chunkflow.training.intensity import noise_augment as run

    image = task.chunk(input_chunk_name)
    with _about(input_chunk_name):
        task[output_chunk_name] = run(image, rng, mode, var, clip, amount=amount)


@operator("defect-augment", family="training", context=_voxelwise)
@input_option()
@output_option()
@seed_option()
@click.option("--prob-missing", type=PROBABILITY, default=0.05, show_default=True)
@click.option("--prob-low-contrast", type=PROBABILITY, default=0.05, show_default=True)
@click.option(
    "--contrast-scale",
    type=click.FloatRange(min=0),
    default=0.1,
    show_default=True,
    help="Low-contrast sections: mean + (x - mean) * this.",
)
def defect_augment(
    task, input_chunk_name, output_chunk_name, rng, prob_missing, prob_low_contrast, contrast_scale
):
    """Per z section: a missing section (0) or a low-contrast one, at random."""
    from chunkflow.training.intensity import defect_augment as run

    image = task.chunk(input_chunk_name)
    with _about(input_chunk_name):
        task[output_chunk_name] = run(image, rng, prob_missing, prob_low_contrast, contrast_scale)


@operator("normalize", family="training", context=_voxelwise)
@input_option()
@output_option()
def normalize(task, input_chunk_name, output_chunk_name):
    """Float32 in [0, 1] by the dtype range (uint8 / 255, uint16 / 65535); floats as they are."""
    from chunkflow.training.intensity import normalize as run

    image = task.chunk(input_chunk_name)
    with _about(input_chunk_name):
        task[output_chunk_name] = run(image)
