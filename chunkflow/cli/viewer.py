"""Viewer operators: neuroglancer (many layers) and view (one chunk in microviewer).

Both print the viewer URL on stdout, serve until --serve-seconds pass or Ctrl-C, then stop the
server and pass the task on. They bind to 127.0.0.1 by default; from another machine, forward
the port (`ssh -L 33333:127.0.0.1:33333 host`, then `-p 33333`) or use --bind-address 0.0.0.0.
"""

from __future__ import annotations

import logging

import click

from chunkflow.cli.framework import NAMES, VOLUME_PATH, operator, vec3_option
from chunkflow.errors import flag_names
from chunkflow.viewer import LAYOUTS

logger = logging.getLogger(__name__)
ZARR_PREFIXES = ("zarr://", "zarr2://", "zarr3://")  # neuroglancer's data source names


class LayerSpecType(click.ParamType):
    """`NAME=PATH`: a layer name and a precomputed volume or zarr store path (`zarr://`,
    `zarr2://`, `zarr3://` in front of the store's path name a zarr store)."""

    name = "name=path"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        name, sep, path = str(value).partition("=")
        if not sep or not name.strip() or not path.strip():
            self.fail(f"expected NAME=PATH (e.g. seg=gs://bucket/seg), got {value!r}", param, ctx)
        path = path.strip()
        prefix = next((p for p in ZARR_PREFIXES if path.startswith(p)), "")
        return name.strip(), prefix + VOLUME_PATH.convert(path[len(prefix) :], param, ctx)


LAYER_SPEC = LayerSpecType()


def _serving_options(fn):
    decorators = [
        click.option(
            "-p",
            "--port",
            type=click.IntRange(0, 65535),
            default=0,
            show_default=True,
            help="Port to serve on; 0 takes any free port (the URL tells which).",
        ),
        click.option(
            "--bind-address",
            default="127.0.0.1",
            show_default=True,
            help="Address to serve on; 0.0.0.0 serves other machines too.",
        ),
        click.option(
            "--serve-seconds",
            "--timeout",
            "serve_seconds",
            type=click.FloatRange(min=0),
            default=None,
            help="Stop serving after this many seconds [default: serve until Ctrl-C].",
        ),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def _serve(what: str, url: str, serve_seconds) -> None:
    from chunkflow.viewer import serve_for

    until = "Ctrl-C" if serve_seconds is None else f"{serve_seconds:g} s pass or Ctrl-C"
    logger.info("%s: serving %s until %s", what, url, until)
    click.echo(url)  # last before waiting: a script that reads it may press Ctrl-C at once
    if serve_for(serve_seconds):
        logger.info("%s: interrupted, the chain goes on", what)


@operator("neuroglancer", family="view")
@click.option(
    "-i",
    "--input-chunk-name",
    "-c",
    "--chunk-names",
    "chunk_names",
    type=NAMES,
    default=None,
    help="Chunks to show, comma separated [default: chunk; none if only --layer is given "
    "and the task holds no chunk named chunk].",
)
@click.option(
    "-l",
    "--layer",
    "layers",
    type=LAYER_SPEC,
    multiple=True,
    help="Also show a precomputed volume or a zarr store (v2, v3, OME-Zarr) as layer NAME "
    "(NAME=PATH, file:// gs:// s3:// http(s)://; zarr://PATH, zarr2://, zarr3:// for zarr, "
    "found by itself in a local folder); repeatable.",
)
@vec3_option(
    "-v", "--voxel-size", positive=True, help="Voxel size (nm) for every chunk, not their own."
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="4panel",
    show_default=True,
    help="Panel layout.",
)
@_serving_options
def neuroglancer(task, chunk_names, layers, voxel_size, layout, port, bind_address, serve_seconds):
    """Show chunks (and precomputed volumes) in Neuroglancer, served from this process.

    Layer kinds follow the chunk layer type: image (grey), segmentation (selectable ids),
    affinity map (RGB = z, y, x affinities), probability map (grey over [0, 1]). Prints the
    viewer URL, serves until --serve-seconds pass or Ctrl-C, then passes the task on.
    """
    if chunk_names is None:
        chunk_names = [] if layers and "chunk" not in task else ["chunk"]
    chunks = {name: task.chunk(name) for name in chunk_names}
    from chunkflow.viewer.neuroglancer import open_viewer

    with flag_names(chunks="chunk names", volumes="--layer volumes"):
        viewer = open_viewer(
            chunks,
            dict(layers),
            voxel_size=voxel_size,
            bind_address=bind_address,
            port=port,
            layout=layout,
        )
    with viewer:
        _serve("neuroglancer", viewer.url, serve_seconds)


@operator("view", family="view")
@click.option(
    "-i",
    "--input-chunk-name",
    default="chunk",
    show_default=True,
    help="Chunk to show (image, segmentation, or a map).",
)
@click.option(
    "-s",
    "--seg",
    "seg_chunk_name",
    default=None,
    help="Segmentation chunk to overlay on the image (their overlap is shown).",
)
@_serving_options
def view(task, input_chunk_name, seg_chunk_name, port, bind_address, serve_seconds):
    """Show one chunk in microviewer, a light browser viewer; optionally with a segmentation."""
    chunk = task.chunk(input_chunk_name)
    seg = task.chunk(seg_chunk_name) if seg_chunk_name else None
    if seg is not None:
        from chunkflow.chunk import check_same_grid

        check_same_grid((seg_chunk_name, seg), (input_chunk_name, chunk), boxes="overlap")
    from chunkflow.viewer.microviewer import open_microviewer

    with open_microviewer(chunk, seg, bind_address=bind_address, port=port) as viewer:
        _serve("view", viewer.url, serve_seconds)
