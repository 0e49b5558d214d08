"""Local file operators: HDF5, TIFF, NumPy and zarr.

Readers cut out, in order of precedence: --cutout-start with --cutout-stop/--cutout-size, the
task bounding box, or the whole file. A file name that is a folder or a prefix gets the
bounding box appended (`seg/` → `seg/0-64_0-512_0-512.h5`), for one file per task; writers name
such files by the chunk's own bounding box.
"""

from __future__ import annotations

import functools

import click

from chunkflow.cli.framework import (
    DTYPE,
    LAYER_TYPE,
    input_option,
    operator,
    output_option,
    reader_context,
    vec3_option,
)
from chunkflow.errors import ChunkflowError, flag_names

H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
TIF_SUFFIXES = (".tif", ".tiff")


# The readers' geometry overrides (`reader_options`) as the library's parameters call them.
GEOMETRY_FLAGS = dict(voxel_size="-x/--voxel-size", voxel_offset="-v/--voxel-offset")


def file_name_option(help: str):
    """`-f/--file-name`, required: a file, or a folder/prefix a bbox completes."""
    return click.option("-f", "--file-name", required=True, help=help)


def reader_options(fn):
    """Options shared by the readers: geometry overrides, cutout, dtype, output name."""
    decorators = [
        click.option(
            "-e", "--dtype", type=DTYPE, default=None, help="Cast to this dtype after reading."
        ),
        click.option(
            "-l",
            "--layer-type",
            type=LAYER_TYPE,
            default=None,
            help="Layer type (default: stored in the file; else uint8 and float data are "
            "images, other integers segmentations: a uint16 image needs -l image).",
        ),
        vec3_option("-v", "--voxel-offset", help="Override the stored voxel offset."),
        vec3_option("-x", "--voxel-size", positive=True, help="Override the stored voxel size."),
        vec3_option("-t", "--cutout-start", help="Start of the cutout, global voxels."),
        vec3_option("-p", "--cutout-stop", help="Stop of the cutout."),
        vec3_option("-s", "--cutout-size", positive=True, help="Size of the cutout."),
        click.option(
            "--set-bbox/--no-set-bbox",
            default=False,
            show_default=True,
            help="Make the chunk's bounding box the task's.",
        ),
        output_option(),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)

    @functools.wraps(fn)
    def wrapper(
        task,
        *,
        cutout_start,
        cutout_stop,
        cutout_size,
        set_bbox,
        output_chunk_name,
        dtype,
        request,
        **kwargs,
    ):
        from chunkflow.context import read_with_context

        bbox = _cutout_bbox(task, cutout_start, cutout_stop, cutout_size)
        chunk = read_with_context(
            lambda box, clip: fn(task, bbox=box, clip=clip, **kwargs),
            bbox,
            request.box(output_chunk_name, bbox) if bbox is not None else None,
        )
        # the layer type follows the stored data; the cast changes how values are held only
        task[output_chunk_name] = cast_option(chunk, dtype, None, "-e/--dtype")
        task.bases[output_chunk_name] = bbox or chunk.bbox
        if set_bbox:
            task.bbox = bbox or chunk.bbox

    del wrapper.__wrapped__  # the framework reads the wrapper's own parameters (request)
    return wrapper


def _cutout_bbox(task, start, stop, size):
    from chunkflow.task_creation.region import box_or

    with flag_names(start="--cutout-start", stop="--cutout-stop", size="--cutout-size"):
        return box_or(task.bbox, start, stop, size, what="cutout")


def cast_option(chunk, dtype, rescale=False, flag="-t/--dtype"):
    """The chunk cast to a dtype option's value (`Chunk.cast`: every value is kept, or it fails;
    --rescale maps floats in [0, 1] onto an integer range; None: the operator has no --rescale).
    """
    import numpy as np

    if dtype is None:
        if rescale:
            raise ChunkflowError(f"--rescale needs {flag}, the integer dtype to rescale to")
        return chunk
    try:
        return chunk.cast(dtype, bool(rescale))
    except ChunkflowError as err:
        target = np.dtype(dtype)
        hint = ""
        if rescale is False and chunk.dtype.kind == "f" and target.kind in "iu":
            info = np.iinfo(target)
            hint = f"; --rescale maps floats in [0, 1] onto {info.min}..{info.max}"
        raise ChunkflowError(f"{flag} {target}: {err}{hint}") from None


def rescale_option():
    return click.option(
        "--rescale",
        is_flag=True,
        help="With -t: map floats in [0, 1] onto the integer dtype's whole range, "
        "round(min + v * (max - min)) (0..255 for uint8, -128..127 for int8). "
        "Without it a cast that would change values fails.",
    )


# HDF5 ----------------------------------------------------------------------------------------
@operator("read-h5", family="io", aliases=["load-h5"], context=reader_context)
@file_name_option("HDF5 file, or a folder/prefix completed by the task bbox.")
@click.option(
    "-d",
    "--dataset-path",
    default=None,
    help="Dataset in the file (default: /main, or the only one).",
)
@reader_options
def read_h5(task, file_name, dataset_path, layer_type, voxel_offset, voxel_size, bbox, clip):
    """Read a chunk from an HDF5 file."""
    from chunkflow.io.files import task_path
    from chunkflow.io.h5 import read_h5 as read

    path = task_path(file_name, task.bbox, H5_SUFFIXES)
    with flag_names(dataset="--dataset-path", **GEOMETRY_FLAGS):
        return read(
            path, dataset_path, bbox, voxel_offset, voxel_size, layer_type=layer_type, clip=clip
        )


@operator("write-h5", family="io", aliases=["save-h5"], effects=("writes",))
@input_option()
@file_name_option("Output .h5 file, or a folder/prefix completed by the chunk bbox.")
@click.option(
    "-d",
    "--dataset-path",
    default="main",
    show_default=True,
    help="Dataset to write; an existing file keeps its other datasets.",
)
@click.option(
    "-c",
    "--compression",
    type=click.Choice(["none", "gzip", "lzf"]),
    default="none",
    show_default=True,
)
@vec3_option(
    "-s",
    "--chunk-size",
    "--block-size",
    "block_size",
    positive=True,
    help="HDF5 storage block (z y x); default contiguous.",
)
@click.option(
    "--with-offset/--without-offset",
    default=True,
    show_default=True,
    help="Store the voxel offset.",
)
@vec3_option("--voxel-size", positive=True, help="Override the voxel size written.")
@click.option(
    "-t", "--dtype", type=DTYPE, default=None, help="Cast before writing (values kept or refused)."
)
@rescale_option()
def write_h5(
    task,
    input_chunk_name,
    file_name,
    dataset_path,
    compression,
    block_size,
    with_offset,
    voxel_size,
    dtype,
    rescale,
):
    """Write a chunk as a dataset of an HDF5 file (atomically).

    Into an existing HDF5 file the other datasets are kept (gunpowder keeps raw, labels and
    predictions in one file): the file is copied to a temporary name with the new dataset,
    then renamed over the old one.
    """
    from chunkflow.io.files import task_path
    from chunkflow.io.h5 import write_h5 as write

    chunk = _prepare(task.chunk(input_chunk_name), voxel_size, dtype, rescale)
    write(
        chunk,
        task_path(file_name, chunk.bbox, H5_SUFFIXES),
        dataset_path,
        compression,
        block_size,
        with_offset,
    )


def _prepare(chunk, voxel_size=None, dtype=None, rescale=False):
    from chunkflow.chunk import Chunk

    chunk = cast_option(chunk, dtype, rescale)
    if voxel_size is not None:
        chunk = Chunk(chunk.array, chunk.voxel_offset, voxel_size, chunk.layer_type)
    return chunk


# TIFF ----------------------------------------------------------------------------------------
@operator("read-tif", family="io", aliases=["load-tif"], context=reader_context)
@file_name_option("TIFF file, or a folder/prefix completed by the task bbox.")
@reader_options
def read_tif(task, file_name, layer_type, voxel_offset, voxel_size, bbox, clip):
    """Read a chunk from a TIFF file (a 2D image is one section)."""
    from chunkflow.io.files import task_path
    from chunkflow.io.tif import read_tif as read

    path = task_path(file_name, task.bbox, TIF_SUFFIXES)
    return read(path, bbox, voxel_offset, voxel_size, layer_type=layer_type, clip=clip)


@operator("write-tif", family="io", aliases=["save-tif"], effects=("writes",))
@input_option()
@file_name_option("Output .tif file, or a folder/prefix completed by the chunk bbox.")
@click.option(
    "-t", "--dtype", type=DTYPE, default=None, help="Cast before writing (default: keep)."
)
@rescale_option()
@click.option(
    "-c",
    "--compression",
    type=click.Choice(["none", "zlib", "lzma", "zstd"]),
    default="none",
    show_default=True,
)
def write_tif(task, input_chunk_name, file_name, dtype, rescale, compression):
    """Write a chunk to a TIFF file, keeping dtype and geometry."""
    from chunkflow.io.files import task_path
    from chunkflow.io.tif import write_tif as write

    chunk = _prepare(task.chunk(input_chunk_name), dtype=dtype, rescale=rescale)
    write(chunk, task_path(file_name, chunk.bbox, TIF_SUFFIXES), compression)


# NumPy ---------------------------------------------------------------------------------------
@operator("load-npy", family="io", aliases=["read-npy"], context=reader_context)
@file_name_option(".npy file, or a folder/prefix completed by the task bbox.")
@reader_options
def load_npy(task, file_name, layer_type, voxel_offset, voxel_size, bbox, clip):
    """Read a chunk from a .npy file.

    The voxel offset comes from --voxel-offset, else from a bbox string in the file name.
    """
    from chunkflow.io.files import task_path
    from chunkflow.io.npy import read_npy

    path = task_path(file_name, task.bbox, (".npy",))
    chunk = read_npy(path, voxel_offset, voxel_size or (1, 1, 1), layer_type)
    if bbox is not None:
        if clip and not bbox.intersect(chunk.bbox).is_empty:
            bbox = bbox.intersect(chunk.bbox)
        if not chunk.bbox.contains(bbox):
            raise ChunkflowError(
                f"{path}: cutout {bbox} is outside the data, which covers {chunk.bbox}"
            )
        chunk = chunk.crop(bbox)
    return chunk


@operator("save-npy", family="io", aliases=["write-npy"], effects=("writes",))
@input_option()
@file_name_option("Output .npy file, or a folder/prefix completed by the chunk bbox.")
def save_npy(task, input_chunk_name, file_name):
    """Write a chunk to a .npy file.

    The file holds only the array: write into a folder (`-f out/`) to keep the offset in the
    file name.
    """
    from chunkflow.io.files import task_path
    from chunkflow.io.npy import write_npy

    chunk = task.chunk(input_chunk_name)
    write_npy(chunk, task_path(file_name, chunk.bbox, (".npy",)))


# zarr ----------------------------------------------------------------------------------------
@operator("load-zarr", family="io", aliases=["read-zarr"], context=reader_context)
@click.option(
    "-f",
    "--store",
    required=True,
    help="zarr (v2, v3, OME-Zarr) or N5 store: a folder, or s3://, gs://, http(s)://.",
)
@click.option(
    "-d",
    "--dataset",
    "--path",
    "dataset",
    default=None,
    help="Array or OME-Zarr image inside the store (default: the store itself or its only array).",
)
@click.option(
    "--level",
    type=click.IntRange(min=0),
    default=None,
    help="OME-Zarr multiscale level  [default: 0]",
)
@reader_options
def load_zarr(task, store, dataset, level, layer_type, voxel_offset, voxel_size, bbox, clip):
    """Read a chunk from a zarr (v2, v3, OME-Zarr) or N5 array.

    Geometry comes from the OME-Zarr scale and translation of the level, else the `resolution`
    and `offset` attributes (world units); what the store does not say needs -x/-v.
    """
    from chunkflow.io.zarr import read_zarr

    with flag_names(dataset="--dataset", **GEOMETRY_FLAGS):
        return read_zarr(
            store,
            dataset,
            bbox,
            layer_type=layer_type,
            level=level,
            voxel_offset=voxel_offset,
            voxel_size=voxel_size,
            clip=clip,
        )


@operator("save-zarr", family="io", aliases=["write-zarr"], effects=("writes",))
@input_option()
@click.option(
    "-f", "--store", required=True, help="zarr store: a folder, or s3://, gs:// (an object store)."
)
@click.option(
    "-d",
    "--dataset",
    "--path",
    "dataset",
    default=None,
    help="Array inside the store (a group); default: the store is the array.",
)
@vec3_option(
    "-c",
    "--block-size",
    "--chunk-size",
    "block_size",
    positive=True,
    help="zarr chunk shape (z y x).",
)
@click.option(
    "--zarr-format",
    type=click.Choice(["2", "3"]),
    default=None,
    help="zarr format of a new array (2: what gunpowder 1.4 with zarr 2 reads)  "
    "[default: the store's, else 3]",
)
@click.option(
    "--ome/--no-ome",
    default=False,
    show_default=True,
    help="Write a new dataset as an OME-Zarr multiscale image (level 0 = the chunk).",
)
@click.option(
    "--ome-version",
    type=click.Choice(["0.4", "0.5"]),
    default=None,
    help="OME-Zarr version: 0.4 is zarr 2, 0.5 zarr 3  [default: follows --zarr-format, else 0.5]",
)
def save_zarr(task, input_chunk_name, store, dataset, block_size, zarr_format, ome, ome_version):
    """Write a chunk into a zarr array or OME-Zarr image, new or existing.

    New arrays carry `resolution`/`offset` (gunpowder), `units` and axis names (c?, z, y, x).
    """
    from chunkflow.io.ome import zarr_format_for
    from chunkflow.io.zarr import write_zarr

    with flag_names(ome_version="--ome-version", ome="--ome", zarr_format="--zarr-format"):
        zarr_format = zarr_format_for(int(zarr_format) if zarr_format else None, ome, ome_version)
    with flag_names(dataset="--dataset"):
        write_zarr(
            task.chunk(input_chunk_name),
            store,
            dataset,
            block_size,
            name=input_chunk_name,
            zarr_format=zarr_format,
            ome=ome,
        )
