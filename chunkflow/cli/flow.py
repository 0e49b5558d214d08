"""Task flow operators: skipping, marking, copying, deleting, cropping, plugins.

Skip operators mark the task skipped; the following compute operators pass it untouched and
finalizers (mark-complete, and later delete-task-in-queue and log upload) still run. With
`--skip-to NAME`, processing resumes at the operator named NAME.
"""

from __future__ import annotations

import logging
import os

import click

from chunkflow.cli.framework import NameListType, input_option, operator, output_option, vec3_option
from chunkflow.errors import ChunkflowError

logger = logging.getLogger(__name__)


def skip_to_option(fn):
    return click.option(
        "--skip-to", default=None, help="Resume processing at the operator with this --name."
    )(fn)


@operator("skip-all-zero", family="flow")
@input_option()
@skip_to_option
def skip_all_zero(task, input_chunk_name, skip_to):
    """Skip the task if the chunk is all zeros."""
    chunk = task.chunk(input_chunk_name)
    if not chunk.array.any():
        task.skip(f"{input_chunk_name} is all zero", to=skip_to)


@operator("skip-none", family="flow")
@input_option()
@skip_to_option
def skip_none(task, input_chunk_name, skip_to):
    """Skip the task if the named item is missing or None."""
    if task.get(input_chunk_name) is None:
        task.skip(f"{input_chunk_name} is none", to=skip_to)


def _marker_path(task, prefix: str, suffix: str) -> str:
    if task.bbox is None:
        raise ChunkflowError(
            "the task has no bounding box to name its file "
            "(start the chain with create-bbox or generate-tasks)"
        )
    return f"{prefix}{task.bbox.string}{suffix}"


def _file_size(path: str) -> int | None:
    """Size of a local or cloud file, None if it does not exist."""
    if "://" not in path or path.startswith("file://"):
        local = path[len("file://") :] if path.startswith("file://") else path
        return os.path.getsize(local) if os.path.isfile(local) else None
    from cloudfiles import CloudFiles

    folder, name = path.rsplit("/", 1)
    return CloudFiles(folder).size(name)


@operator("skip-task-by-file", family="flow")
@click.option("-p", "--prefix", required=True, help="Start of the file path (before the bbox).")
@click.option("-s", "--suffix", default="", help="End of the file path (after the bbox).")
@click.option(
    "-m",
    "--mode",
    type=click.Choice(["exist", "missing", "empty"]),
    default="exist",
    show_default=True,
    help="Skip if {prefix}{bbox}{suffix} exists, is missing, or is missing or empty.",
)
@skip_to_option
def skip_task_by_file(task, prefix, suffix, mode, skip_to):
    """Skip the task depending on a file named after its bounding box."""
    path = _marker_path(task, prefix, suffix)
    size = _file_size(path)
    skip = {"exist": size is not None, "missing": size is None, "empty": not size}[mode]
    if skip:
        task.skip(
            f"{path} {'exists' if size is not None else 'is missing'}"
            + (" and is empty" if size == 0 else ""),
            to=skip_to,
        )


@operator("mark-complete", family="flow", kind="finalizer", effects=("writes",))
@click.option("-p", "--prefix", required=True, help="Start of the file path (before the bbox).")
@click.option("-s", "--suffix", default="", help="End of the file path (after the bbox).")
def mark_complete(task, prefix, suffix):
    """Create an empty file {prefix}{bbox}{suffix}; runs for skipped tasks too."""
    path = _marker_path(task, prefix, suffix)
    if "://" in path and not path.startswith("file://"):
        from cloudfiles import CloudFiles

        folder, name = path.rsplit("/", 1)
        CloudFiles(folder).put(name, b"")
        return
    local = path[len("file://") :] if path.startswith("file://") else path
    folder = os.path.dirname(os.path.abspath(local))
    if not os.path.isdir(folder):
        raise ChunkflowError(f"output folder {folder} does not exist (for {local})")
    with open(local, "wb"):
        pass


@operator("copy-var", family="flow")
@click.option(
    "-i",
    "-f",
    "--input-chunk-name",
    "--from-name",
    "input_chunk_name",
    default="chunk",
    show_default=True,
    help="Item to copy.",
)
@click.option(
    "-o",
    "-t",
    "--output-chunk-name",
    "--to-name",
    "output_chunk_name",
    required=True,
    help="Name of the copy.",
)
@click.option("--deep-copy/--shallow-copy", default=True, show_default=True)
def copy_var(task, input_chunk_name, output_chunk_name, deep_copy):
    """Copy an item of the task under a new name."""
    import copy

    if input_chunk_name not in task:
        task.chunk(input_chunk_name)  # raises the standard "no chunk named" error
    value = task[input_chunk_name]
    task[output_chunk_name] = copy.deepcopy(value) if deep_copy else value


@operator("delete-chunk", family="flow", aliases=["delete-var"])
@click.option(
    "-i",
    "-v",
    "--input-chunk-name",
    "--var-names",
    "names",
    type=NameListType(),
    required=True,
    help="Items to delete, comma separated.",
)
def delete_chunk(task, names):
    """Delete items from the task to free memory."""
    missing = [n for n in names if n not in task]
    if missing:
        task.chunk(missing[0])
    for name in names:
        del task[name]


@operator("crop-margin", family="flow")
@input_option()
@output_option()
@vec3_option(
    "-m",
    "--margin-size",
    nonnegative=True,
    help="Margin to remove on both sides (default: crop to the task bbox).",
)
def crop_margin(task, input_chunk_name, output_chunk_name, margin_size):
    """Crop a margin off a chunk, or crop it to the task bounding box."""
    chunk = task.chunk(input_chunk_name)
    if margin_size is not None:
        if any(2 * m >= s for m, s in zip(margin_size, chunk.spatial_shape)):
            raise ChunkflowError(
                f"margin {tuple(margin_size)} leaves nothing of chunk "
                f"{input_chunk_name!r} of size {tuple(chunk.spatial_shape)}"
            )
        task[output_chunk_name] = chunk.crop_margin(margin_size)
    elif task.bbox is not None:
        task[output_chunk_name] = chunk.crop(task.bbox)
    else:
        raise ChunkflowError("give --margin-size, or a task bounding box to crop to")


class OptionalNames(NameListType):
    def convert(self, value, param, ctx):
        if value in (None, "") or value == []:
            return []
        return super().convert(value, param, ctx)


@operator("plugin", family="flow")
@click.option(
    "-f",
    "--file",
    "plugin_file",
    required=True,
    help="Python file defining execute(*inputs, **args), or a built-in plugin name.",
)
@click.option(
    "-i",
    "--input-chunk-name",
    "--input-names",
    "input_names",
    type=OptionalNames(),
    default="chunk",
    show_default=True,
    help="Items passed to execute(), comma separated ('' for none).",
)
@click.option(
    "-o",
    "--output-chunk-name",
    "--output-names",
    "output_names",
    type=OptionalNames(),
    default="",
    help="Names for what execute() returns.",
)
@click.option(
    "-a",
    "--args",
    "args",
    default=None,
    help="Keyword arguments: 'sigma=2;shape=(1,2,2);mode=\"nearest\"' "
    "(Python literals; anything else is taken as a string).",
)
def plugin(task, plugin_file, input_names, output_names, args):
    """Run a user function on chunks of the task."""
    from chunkflow.plugins import load_plugin, parse_args, run_plugin

    execute = load_plugin(plugin_file)
    kwargs = parse_args(args)
    inputs = [task.chunk(n) if n in task else task.get(n) for n in input_names]
    missing = [n for n in input_names if n not in task]
    if missing:
        task.chunk(missing[0])
    for name, value in run_plugin(execute, inputs, kwargs, output_names).items():
        task[name] = value
