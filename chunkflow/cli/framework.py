"""The operator framework: how a click command becomes an operator of the chain.

Each operator is a plain function over a `Task`, declared with `@operator(...)` and click
options. When the command line is parsed, every operator turns into a
`chunkflow.pipeline.Operator`; the command line runs them as a `chunkflow.pipeline.Pipeline`,
the engine that also runs pipelines built in Python. The kinds of operators, their side
effects (`EFFECTS`) and the rules of skipped, failed and dry-run tasks are the engine's: see
`chunkflow.pipeline`. tests/cli/test_dry_run.py runs every operator under `--dry-run` and
checks that nothing changed.

This module imports nothing heavy: `chunkflow --help` must start fast.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager

import click

from chunkflow.errors import ChunkflowError
from chunkflow.pipeline import (  # noqa: F401  (the engine's names, for the operator modules)
    EFFECTS,
    KINDS,
    Operator,
    OperatorError,
    RunConfig,
    Stage,
    check_declaration,
)

# Families in the order `chunkflow --help` lists them.
FAMILIES = {
    "generate": "Create chunks and tasks",
    "io": "Read and write (HDF5, TIFF, NumPy, zarr, Neuroglancer precomputed)",
    "inference": "ConvNet inference",
    "segmentation": "Segmentation and evaluation",
    "blockwise": "Whole-volume segmentation: one id per object across chunks and workers",
    "image": "Image processing and downsampling",
    "mesh": "Meshes and skeletons",
    "training": "Training: affinity targets, augmentation and the train sink",
    "view": "Look at the data: neuroglancer and a one-chunk viewer",
    "distributed": "Distributed runs: task queues and task files",
    "flow": "Task flow: skip, mark, copy, delete, plugins",
}

OPERATORS: dict[str, click.Command] = {}
ALIASES: dict[str, str] = {}
FAMILY_OF: dict[str, str] = {}
EFFECTS_OF: dict[str, tuple[tuple[str, ...], str]] = {}


def operator(
    name: str,
    *,
    family: str,
    aliases: Iterable[str] = (),
    kind: str = "map",
    effects: Iterable[str] = (),
    dry_run: str = "skip",
    context: Callable | None = None,
):
    """Declare an operator. Stack click options below this decorator.

    The decorated function receives the task (or, for ``stream`` operators, the stream) and the
    parsed options as keyword arguments; a parameter called `config` receives the `RunConfig`,
    one called `request` the `chunkflow.context.Request` the chain's plan gives this stage.
    `effects` names its side effects (keys of `EFFECTS`); `dry_run` is "skip" (under
    `--dry-run` it is not run) or "self" (it runs and honours `config.dry_run`). `context`
    maps the parsed options to the operator's `chunkflow.context.Context` (the chunks it reads
    and writes, the context it needs); without one, the chunks named by `-i` are its inputs.
    Parsing a command line turns each of its operators into a `chunkflow.pipeline.Operator`.
    """
    effects = tuple(effects)
    check_declaration(name, kind, effects, dry_run)
    assert family in FAMILIES, family

    def decorate(fn: Callable) -> Callable:
        params = list(reversed(getattr(fn, "__click_params__", [])))
        params.append(
            click.Option(
                ["--name"],
                default=name,
                show_default=True,
                help="Name of this operator in logs and for --skip-to.",
            )
        )
        declaration = dict(kind=kind, effects=effects, dry_run=dry_run)
        doc = inspect.getdoc(fn) or ""
        command = click.Command(
            name,
            callback=_builder(fn, declaration, context),
            params=params,
            help=doc,
            short_help=doc.split("\n", 1)[0].rstrip("."),
            context_settings={"help_option_names": ["-h", "--help"]},
        )
        OPERATORS[name] = command
        FAMILY_OF[name] = family
        EFFECTS_OF[name] = (effects, dry_run)
        for alias in aliases:
            ALIASES[alias] = name
        fn.command = command
        return fn

    return decorate


def _builder(fn: Callable, declaration: dict, context: Callable | None) -> Callable:
    """The click callback of an operator: its parsed options bound into an `Operator`."""
    signature = inspect.signature(fn).parameters
    wants_config, wants_request = "config" in signature, "request" in signature

    def build(**kwargs) -> Operator:
        from chunkflow.context import Request

        name = kwargs.pop("name")
        declared = context(**kwargs) if context is not None else None
        inputs = kwargs.get("input_chunk_name") or ()
        request = Request()
        if wants_request:
            kwargs["request"] = request

        def bound(task, **config):  # the engine gives the run's config where it is wanted
            return fn(task, **kwargs, **config)

        return Operator(
            name,
            bound,
            inputs=inputs,
            outputs=declared.outputs if declared is not None else (),
            context=declared,
            request=request,
            takes_config=wants_config,
            **declaration,
        )

    return build


def reader_context(output_chunk_name, **_):
    """A reader writes one chunk and reads none: requests for its chunk stop here."""
    from chunkflow.context import Context

    return Context((), (output_chunk_name,))


# ---------------------------------------------------------------------------------------------
# Parameter types: parse once, at the edge.


class Vec3Type(click.ParamType):
    """Three integers (z, y, x); used with nargs=3."""

    name = "int"

    def convert(self, value, param, ctx):
        try:
            return int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer", param, ctx)


def vec3_option(*decls, positive: bool = False, nonnegative: bool = False, **kwargs):
    """An option taking three integers z y x, delivered as a `Cartesian` (or None)."""

    def to_cartesian(ctx, param, value):
        if value is None:
            return None
        from chunkflow.geometry import Cartesian

        if positive and min(value) <= 0:
            raise click.BadParameter(
                f"expected three positive integers, got {' '.join(map(str, value))}"
            )
        if nonnegative and min(value) < 0:
            raise click.BadParameter(
                f"expected three integers >= 0, got {' '.join(map(str, value))}"
            )
        return Cartesian(value)

    kwargs.setdefault("metavar", "Z Y X")
    return click.option(*decls, nargs=3, type=Vec3Type(), callback=to_cartesian, **kwargs)


class BBoxType(click.ParamType):
    """A bounding box string `z0-z1_y0-y1_x0-x1`."""

    name = "bbox"

    def convert(self, value, param, ctx):
        from chunkflow.geometry import BoundingBox

        if isinstance(value, BoundingBox):
            return value
        try:
            return BoundingBox.from_string(value)
        except ChunkflowError as err:
            self.fail(str(err), param, ctx)


class NameListType(click.ParamType):
    """A comma-separated list of chunk names."""

    name = "names"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        names = [v.strip() for v in str(value).split(",") if v.strip()]
        if not names:
            self.fail(f"expected a comma-separated list of names, got {value!r}", param, ctx)
        return names


class VolumePathType(click.ParamType):
    """A Neuroglancer precomputed path; a plain local path becomes `file://` + absolute path."""

    name = "path"
    schemes = ("file://", "gs://", "s3://", "http://", "https://", "matrix://", "mem://")

    def convert(self, value, param, ctx):
        text = str(value)
        if text.startswith("precomputed://"):
            text = text[len("precomputed://") :]
        if text.startswith("file://"):
            return "file://" + os.path.abspath(os.path.expanduser(text[len("file://") :]))
        if "://" in text:
            if not text.startswith(self.schemes) and not cloudfiles_alias(text):
                self.fail(
                    f"unsupported volume path {value!r}: expected file://, gs://, s3://, "
                    "http(s):// or a cloudfiles alias (matrix://, those of "
                    "~/.cloudfiles/aliases.json)",
                    param,
                    ctx,
                )
            return text
        return "file://" + os.path.abspath(os.path.expanduser(text))


def cloudfiles_alias(path: str) -> bool:
    """Whether the scheme of `path` is an alias cloudfiles knows: its built-in ones (matrix://,
    nokura://, tigerdata://) and those registered in its alias file (`cloudfiles alias add`),
    each an S3-compatible endpoint. cloudfiles is imported only for such an unknown scheme."""
    import re

    scheme = path.split("://", 1)[0]
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return False
    from cloudfiles import paths

    paths.update_aliases_from_file()
    return scheme in paths.ALIASES


def compress_option():
    """`--compress`: the HTTP content encoding of the blocks written to a precomputed volume."""
    from chunkflow.io import PRECOMPUTED_COMPRESSIONS

    return click.option(
        "--compress",
        type=click.Choice(PRECOMPUTED_COMPRESSIONS),
        default=None,
        help="Compress every block written: gzip or br (stored with that Content-Encoding, "
        "which neuroglancer, tensorstore and cloud-volume read), or none [default: gzip for "
        "gs://, s3:// and other cloud paths, none for file:// ones, which tensorstore reads "
        "only uncompressed].",
    )


class DTypeType(click.ParamType):
    """A numpy data type name (uint8, float32, ...)."""

    name = "dtype"

    def convert(self, value, param, ctx):
        import numpy as np

        try:
            return np.dtype(value)
        except TypeError:
            self.fail(
                f"{value!r} is not a numpy data type (e.g. uint8, uint32, float32)", param, ctx
            )


class NeighborhoodType(click.ParamType):
    """Affinity offsets `z,y,x;z,y,x;...`."""

    name = "offsets"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return tuple(tuple(v) for v in value)
        offsets = []
        for part in str(value).split(";"):
            try:
                offset = tuple(int(v) for v in part.split(","))
            except ValueError:
                offset = ()
            if len(offset) != 3:
                self.fail(
                    f"bad neighborhood {value!r}: expected offsets z,y,x separated by ';', "
                    "e.g. 1,0,0;0,1,0;0,0,1",
                    param,
                    ctx,
                )
            offsets.append(offset)
        return tuple(offsets)


class AxesType(click.ParamType):
    """Spatial axes `0,1,2` (0 = z, 1 = y, 2 = x); an empty string means none."""

    name = "axes"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        text = str(value).strip()
        try:
            axes = tuple(int(v) for v in text.split(",")) if text else ()
        except ValueError:
            axes = (-1,)
        if any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
            self.fail(
                f"bad axes {value!r}: expected distinct axes among 0,1,2 (z,y,x), e.g. 1,2",
                param,
                ctx,
            )
        return axes


LAYER_TYPE_NAMES = ("image", "segmentation", "probability_map", "affinity_map")
LAYER_TYPE = click.Choice(LAYER_TYPE_NAMES)

BBOX = BBoxType()
DTYPE = DTypeType()
NAMES = NameListType()
VOLUME_PATH = VolumePathType()
NEIGHBORHOOD = NeighborhoodType()
AXES = AxesType()


def parse_ids(names, option: str = "--ids"):
    """Object ids from a NAMES option (None stays None); one-line error for non-integers."""
    if names is None:
        return None
    try:
        return [int(n) for n in names]
    except ValueError:
        raise ChunkflowError(
            f"{option}: object ids must be integers, got {','.join(names)}"
        ) from None


def volume_path_option(help: str | None = None):
    """`-v/--volume-path`, required: a precomputed volume (`VOLUME_PATH`)."""
    return click.option("-v", "--volume-path", type=VOLUME_PATH, required=True, help=help)


def mip_option():
    """`-m/--mip`; None means the global `--mip`, resolved by the operator from its config."""
    return click.option(
        "-m",
        "--mip",
        type=click.IntRange(min=0),
        default=None,
        help="Mip level (default: the global --mip).",
    )


def input_option(default: str = "chunk", multiple: bool = False, help: str | None = None):
    """`-i/--input-chunk-name`: a name, or a comma list for multi-input operators."""
    return click.option(
        "-i",
        "--input-chunk-name",
        "input_chunk_name",
        type=NAMES if multiple else str,
        default=default,
        show_default=True,
        help=help
        or (
            "Names of the input chunks, comma separated."
            if multiple
            else "Name of the input chunk."
        ),
    )


def output_option(default: str = "chunk", multiple: bool = False, help: str | None = None):
    """`-o/--output-chunk-name`."""
    return click.option(
        "-o",
        "--output-chunk-name",
        "output_chunk_name",
        type=NAMES if multiple else str,
        default=default,
        show_default=True,
        help=help
        or (
            "Names of the output chunks, comma separated."
            if multiple
            else "Name of the output chunk."
        ),
    )


# ---------------------------------------------------------------------------------------------
# Options and helpers shared by operator modules (regions, inference, targets, augment).

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


def voxelwise_context(input_chunk_name, output_chunk_name, mask_name=None, **_):
    """The context of an operator voxel by voxel: what its output needs, its input needs."""
    from chunkflow.context import Context

    inputs = (input_chunk_name,) + ((mask_name,) if mask_name else ())
    return Context(inputs, (output_chunk_name,))


def output_box(task, request, output, chunk):
    """The box an operator's output covers: its base box grown by what the operators after it
    need, when a reader upstream read with context; else the input chunk's box."""
    base = task.bases.get(output)
    return chunk.bbox if base is None else request.box(output, base)


def parameters(options: dict, names) -> dict:
    """`options` as the keyword arguments of a library call: `names` maps each option to the
    library's parameter (a tuple: names both spell alike)."""
    names = names if isinstance(names, dict) else {name: name for name in names}
    return {parameter: options[option] for option, parameter in names.items()}


def chunks_on_one_grid(task, *names: str) -> list:
    """The task's chunks `names`, refused (naming them) unless each covers the same voxels as
    the first."""
    from chunkflow.chunk import check_same_grid

    chunks = task.chunks(names)
    for name, chunk in zip(names[1:], chunks[1:]):
        check_same_grid((names[0], chunks[0]), (name, chunk))
    return chunks


@contextmanager
def about_chunk(name: str):
    """Prefix library errors with the chunk they concern."""
    try:
        yield
    except ChunkflowError as err:
        if str(err).startswith(f"chunk {name!r}"):
            raise
        raise ChunkflowError(f"chunk {name!r}: {err}") from err
