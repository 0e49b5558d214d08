"""Image processing operators: contrast and intensity normalization, quantization, Gaussian
filter, channel voting, downsampling and mip pyramids (chunkflow.image holds the work)."""

from __future__ import annotations

import click

from chunkflow.cli.framework import (
    VOLUME_PATH,
    compress_option,
    input_option,
    operator,
    output_option,
    vec3_option,
    volume_path_option,
)
from chunkflow.errors import flag_names

FRACTION = click.FloatRange(0, 1, max_open=True)
GREY = click.IntRange(0, 255)

# The library's parameters (chunkflow.image) as these operators' flags, for its errors.
IMAGE_FLAGS = dict(
    levels_path="--levels-path",
    lower_clip_fraction="--lower-clip-fraction",
    upper_clip_fraction="--upper-clip-fraction",
    minval="--minval",
    maxval="--maxval",
    mode="--mode",
    sigma="--sigma",
    factor="--factor",
    chunk_mip="--chunk-mip",
    start_mip="--start-mip",
    stop_mip="--stop-mip",
    non_aligned_writes="--non-aligned-writes",
)


def factor_option():
    return vec3_option(
        "-f",
        "--factor",
        default=(1, 2, 2),
        positive=True,
        show_default=True,
        help="Downsampling factor (z y x).",
    )


@operator("normalize-section-contrast", family="image")
@input_option()
@output_option()
@click.option(
    "-p",
    "--levels-path",
    type=VOLUME_PATH,
    default=None,
    help="Folder of per-section histograms {path}/{z} (igneous luminance levels, e.g. "
    "gs://bucket/layer/levels/1) [default: histograms of the chunk's own sections].",
)
@click.option(
    "-l",
    "--lower-clip-fraction",
    type=FRACTION,
    default=0.01,
    show_default=True,
    help="Fraction of the nonzero voxels of a section clipped at the dark end.",
)
@click.option(
    "-u",
    "--upper-clip-fraction",
    type=FRACTION,
    default=0.01,
    show_default=True,
    help="Fraction clipped at the bright end.",
)
@click.option("--minval", type=GREY, default=1, show_default=True, help="Lower level maps here.")
@click.option("--maxval", type=GREY, default=255, show_default=True, help="Upper level maps here.")
def normalize_section_contrast(
    task,
    input_chunk_name,
    output_chunk_name,
    levels_path,
    lower_clip_fraction,
    upper_clip_fraction,
    minval,
    maxval,
):
    """Stretch the contrast of each z section of a uint8 image between clipped levels.

    Per section, ignoring 0 (missing data): the lower level leaves at most the lower clip
    fraction of the voxels below it, the upper level at most the upper fraction above it.
    Values are mapped linearly from [lower, upper] to [minval, maxval] and clipped; 0 stays 0.
    """
    from chunkflow.image.normalize import normalize_section_contrast as run

    with flag_names(**IMAGE_FLAGS):
        task[output_chunk_name] = run(
            task.chunk(input_chunk_name),
            lower_clip_fraction,
            upper_clip_fraction,
            minval,
            maxval,
            levels_path,
        )


@operator("normalize-intensity", family="image")
@input_option()
@output_option()
def normalize_intensity(task, input_chunk_name, output_chunk_name):
    """Scale an image to float32 in [0, 1] (integers by dtype range, floats by min and max)."""
    from chunkflow.image.normalize import normalize_intensity as run

    task[output_chunk_name] = run(task.chunk(input_chunk_name))


@operator("quantize", family="image")
@input_option()
@output_option()
@click.option(
    "--mode",
    type=click.Choice(["xy", "z", "mean"]),
    default="xy",
    show_default=True,
    help="Affinity channels to use: mean of y and x, z, or the mean of all.",
)
def quantize(task, input_chunk_name, output_chunk_name, mode):
    """Turn a float map in [0, 1] into a uint8 image (round(v * 255)).

    A 3-channel affinity map (z, y, x) is reduced by --mode first; one channel is used as is.
    """
    from chunkflow.image.normalize import quantize as run

    with flag_names(**IMAGE_FLAGS):
        task[output_chunk_name] = run(task.chunk(input_chunk_name), mode)


@operator("gaussian-filter", family="image")
@input_option()
@output_option()
@click.option(
    "-s",
    "--sigma",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Standard deviation in voxels.",
)
@click.option("--3d", "three_d", is_flag=True, help="Filter along z too (default: 2D sections).")
def gaussian_filter(task, input_chunk_name, output_chunk_name, sigma, three_d):
    """Gaussian smoothing of each z section (or in 3D), keeping the dtype."""
    from chunkflow.image.filters import gaussian_filter as run

    with flag_names(**IMAGE_FLAGS):
        task[output_chunk_name] = run(task.chunk(input_chunk_name), sigma, three_d)


@operator("channel-voting", family="image")
@input_option()
@output_option()
def channel_voting(task, input_chunk_name, output_chunk_name):
    """Label each voxel of a (c,z,y,x) map by its largest channel + 1 (0 where all are 0).

    The result is a uint8 segmentation; ties go to the lowest channel.
    """
    from chunkflow.image.filters import channel_voting as run

    task[output_chunk_name] = run(task.chunk(input_chunk_name))


@operator("downsample", family="image")
@input_option()
@output_option()
@factor_option()
def downsample(task, input_chunk_name, output_chunk_name, factor):
    """Downsample a chunk: average images and maps, block mode for segmentation.

    Voxel offset and size must be divisible by the factor; the result has offset / factor and
    voxel size * factor. Integer means are truncated. Mode ties are broken as igneous does
    (tinybrain: for 2x2 blocks [[a, b], [c, d]] a if a == b or a == c, else b if b == c, else d;
    for larger blocks the label that comes first in z, y, x order).
    """
    from chunkflow.image.downsample import downsample as run

    with flag_names(**IMAGE_FLAGS):
        task[output_chunk_name] = run(task.chunk(input_chunk_name), factor)


@operator("downsample-upload", family="image", effects=("writes",))
@input_option()
@volume_path_option(
    "Precomputed volume (missing scales are added to its info), or an OME-Zarr image, "
    "local or s3:// gs:// (missing levels are added)."
)
@factor_option()
@click.option(
    "-c",
    "--chunk-mip",
    type=click.IntRange(min=0),
    default=None,
    help="Mip of the input chunk [default: the global --mip].",
)
@click.option(
    "-s",
    "--start-mip",
    type=click.IntRange(min=0),
    default=None,
    help="First mip written [default: chunk mip + 1].",
)
@click.option(
    "-p",
    "--stop-mip",
    type=click.IntRange(min=1),
    default=None,
    help="Stop mip, NOT written (--start-mip 1 --stop-mip 5 writes mips 1-4) "
    "[default: start mip + 4].",
)
@click.option(
    "--fill-missing",
    "--non-aligned-writes",
    "non_aligned_writes",
    is_flag=True,
    help="Allow writes not aligned to a mip's storage blocks: blocks partly covered are read, "
    "missing ones as zeros, and merged (unsafe with many workers).",
)
@compress_option()
def downsample_upload(
    task,
    input_chunk_name,
    volume_path,
    factor,
    chunk_mip,
    start_mip,
    stop_mip,
    non_aligned_writes,
    compress,
    config,
):
    """Downsample a chunk repeatedly and write mips start..stop-1 into a precomputed volume.

    Each mip is --factor coarser than the one below; the chunk's offset and size must be
    divisible by the total factor of the last mip written.
    """
    from chunkflow.image.downsample import downsample_upload as run

    with flag_names(**IMAGE_FLAGS):
        run(
            task.chunk(input_chunk_name),
            volume_path,
            factor,
            config.mip if chunk_mip is None else chunk_mip,
            start_mip,
            stop_mip,
            non_aligned_writes,
            name=input_chunk_name,
            compress=compress,
        )
