"""Augmentations: mirror, transpose and elastic warps (`chunkflow.training.augment`);
intensity, noise, section defects and normalisation (`chunkflow.training.intensity`).

The wrappers parse options and call the library. A random operator builds its random
generator once per command line from `--seed` (default: a fresh random seed) and draws from
it task after task, so a run with a fixed seed is repeatable.
"""

from __future__ import annotations

import math

import click

from chunkflow.cli.framework import (
    AXES,
    NAMES,
    PROBABILITY,
    about_chunk,
    input_option,
    operator,
    output_option,
    pad_option,
    seed_option,
    vec3_option,
    voxelwise_context,
)
from chunkflow.errors import ChunkflowError

# as training.intensity.NOISE_MODES (not imported: --help stays light), with the long name
NOISE_MODES = ("gaussian", "s&p", "salt-and-pepper", "poisson", "speckle")


def _joint(input_chunk_name, output_chunk_name, **_):
    """The context of a transform of several chunks together: they cover the same voxels."""
    from chunkflow.context import Context

    return Context(tuple(input_chunk_name), tuple(output_chunk_name or input_chunk_name))


def _outputs(inputs, outputs):
    outputs = outputs or inputs
    if len(outputs) != len(inputs):
        raise ChunkflowError(
            f"-o names {len(outputs)} chunk(s) ({','.join(outputs)}) but -i names "
            f"{len(inputs)} ({','.join(inputs)})"
        )
    return outputs


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
    from chunkflow.training.margins import equal_sizes

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
    from chunkflow.context import Context, centred, grow_by
    from chunkflow.training.margins import elastic_margin

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
    from chunkflow.training.margins import elastic_with_context

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


@operator("intensity-augment", family="training", context=voxelwise_context)
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
    with about_chunk(input_chunk_name):
        task[output_chunk_name] = run(image, rng, tuple(scale), tuple(shift), z_section_wise, clip)


@operator("noise-augment", family="training", context=voxelwise_context)
@input_option()
@output_option()
@seed_option()
@click.option(
    "--mode",
    type=click.Choice(NOISE_MODES),
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
    with about_chunk(input_chunk_name):
        task[output_chunk_name] = run(image, rng, mode, var, clip, amount=amount)


@operator("defect-augment", family="training", context=voxelwise_context)
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
    with about_chunk(input_chunk_name):
        task[output_chunk_name] = run(image, rng, prob_missing, prob_low_contrast, contrast_scale)


@operator("normalize", family="training", context=voxelwise_context)
@input_option()
@output_option()
def normalize(task, input_chunk_name, output_chunk_name):
    """Float32 in [0, 1] by the dtype range (uint8 / 255, uint16 / 65535); floats as they are."""
    from chunkflow.training.intensity import normalize as run

    image = task.chunk(input_chunk_name)
    with about_chunk(input_chunk_name):
        task[output_chunk_name] = run(image)
