"""The operator framework: how a click command becomes a lazy stage of the chain.

Each operator is a plain function over a `Task`, declared with `@operator(...)` and click
options. When the command line is parsed, every operator turns into a `Stage`; the stages are
chained as generators over a stream of tasks, so one task at a time flows through the chain.

Kinds of operators:

- ``map``: `fn(task)` changes the task in place. Skipped tasks pass untouched.
- ``source``: `fn(task)` returns an iterable of new tasks (a task generator, e.g. a grid of
  bounding boxes or a queue). Skipped tasks pass untouched.
- ``finalizer``: like map, but also runs for skipped tasks (delete the queue message, upload
  the log, mark the task complete).
- ``stream``: `fn(stream)` returns a new stream (full control, e.g. a sink that trains on all
  tasks at once).

Side effects are declared: ``effects=("writes",)`` and the like (see `EFFECTS`). Under
`--dry-run` an operator with effects does nothing but log, unless it declares
``dry_run="self"``: then it runs and honours `config.dry_run` itself (a task source that reads
a queue without leasing, a planner that prints what it would write). tests/cli/test_dry_run.py
runs every operator under `--dry-run` and checks that nothing changed.

Failed tasks: when a task's source can retry it (`task.contain_errors`, set by queue workers),
an error in an operator fails only that task (`task.fail`); a failed task passes every later
operator untouched, finalizers included, and its source settles it. Otherwise the error stops
the run. Whatever the code an operator runs raises (a plugin's `sys.exit(0)` or own
`BaseException` included) is such an error; only Ctrl-C and SIGTERM end the run as themselves.

This module imports nothing heavy: `chunkflow --help` must start fast.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import click

from chunkflow.errors import STOPS, ChunkflowError

logger = logging.getLogger("chunkflow")

KINDS = ("map", "source", "finalizer", "stream")

# Side effects an operator may declare.
EFFECTS = {
    "writes": "writes files or volumes",
    "queue": "changes a task queue (sends, leases, deletes)",
    "checkpoints": "writes model checkpoints",
    "metrics": "sends metrics (CloudWatch)",
    "logs": "writes task logs",
}

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


@dataclass
class RunConfig:
    """Global options of one command line, read by operator wrappers at parse time."""

    mip: int = 0
    dry_run: bool = False
    verbose: bool = False
    s3_endpoint: str | None = None  # --s3-endpoint, for the commands we print to run elsewhere
    extras: dict = field(default_factory=dict)
    # (line, complete) from operators that report on the whole run (a queue worker's counts):
    # printed after the timing table; an incomplete one fails the run with its line
    closing: list = field(default_factory=list)


class OperatorError(Exception):
    """An error raised inside an operator, prefixed with the operator name and task bbox.

    Its message goes to the error line, the task log and dead letters: URL credentials in it
    (of an unexpected library error, say) are redacted here."""

    def __init__(self, message: str):
        from chunkflow.redact import redact

        super().__init__(redact(message))


@dataclass
class Stage:
    """One operator instance in the chain.

    `context` (a `chunkflow.context.Context`) declares the chunks it reads and writes and the
    context it needs; `request` is what the chain's plan asks of it (`plan_context`). A stage
    without a context that reads chunks by name (`inputs`) sees them over their base box: the
    context grown for operators further down is not its to see.
    """

    name: str
    kind: str
    fn: Callable
    effects: tuple[str, ...] = ()
    dry_run: bool = False  # this run is a dry run and this operator must not act
    context: object = None
    request: object = None
    inputs: tuple[str, ...] = ()

    def __call__(self, stream: Iterable) -> Iterator:
        if self.dry_run and self.kind == "stream":
            logger.info("%s: dry run, not run (%s)", self.name, ", ".join(self.effects))
            yield from stream
            return
        if self.kind == "stream":
            iterator = iter(self.fn(stream))
            while True:
                try:
                    task = self._call(next, iterator)
                except StopIteration:
                    return
                yield task
        for task in stream:
            if task.failed:
                yield task
                continue
            if task.skipped and task.skip_to == self.name:
                logger.debug("%s: resuming skipped task %s", self.name, task.bbox)
                task.resume()
            if task.skipped and self.kind != "finalizer":
                yield task
                continue
            if self.dry_run:
                logger.info("%s: dry run, nothing done for task %s", self.name, task.bbox)
                yield task
                continue
            if self.kind == "source":
                yield from self._generate(task)
                continue
            try:
                with task.timer(self.name):
                    self._run(task)
            except OperatorError as err:
                if not task.contain_errors:
                    raise
                logger.error("%s", err, exc_info=logger.isEnabledFor(logging.DEBUG))
                task.fail(str(err))
            yield task

    def _run(self, task) -> None:
        """Run the operator on a task, keeping the base boxes of its chunks (see Stage)."""
        if self.context is not None:
            from chunkflow.context import output_bases

            output_bases(self.context, task.bases)
            self._call(self.fn, task)
            return
        grown = {}
        for name in self.inputs:
            base, chunk = task.bases.get(name), task.get(name)
            if base is not None and hasattr(chunk, "bbox") and chunk.bbox != base:
                if chunk.bbox.contains(base):
                    view = chunk.crop(base)
                    grown[name] = (chunk, view)
                    task[name] = view
        try:
            self._call(self.fn, task)
        finally:
            for name, (chunk, view) in grown.items():
                if task.get(name) is view:
                    task[name] = chunk  # untouched: downstream gets the context back

    def _generate(self, task) -> Iterator:
        iterator = iter(self._call(self.fn, task))
        while True:
            start = time.perf_counter()
            try:
                new_task = self._call(next, iterator)
            except StopIteration:
                return
            new_task.log["timer"][self.name] = time.perf_counter() - start
            yield new_task

    def _call(self, fn, arg):
        try:
            return fn(arg)
        except StopIteration:
            raise
        except OperatorError:
            raise
        except ChunkflowError as err:
            raise OperatorError(f"{self._where(arg)}: {err}") from err
        except Exception as err:  # an unexpected failure: keep the cause for --verbose
            raise OperatorError(f"{self._where(arg)}: {type(err).__name__}: {err}") from err
        except STOPS:
            raise
        except SystemExit as err:  # user code (a plugin, a model) may not end the run, even 0
            raise OperatorError(
                f"{self._where(arg)}: sys.exit({err.code!r}) was called; the code an operator "
                "runs must return or raise an exception"
            ) from err
        except BaseException as err:  # e.g. a plugin's own BaseException subclass
            raise OperatorError(f"{self._where(arg)}: {type(err).__name__}: {err}") from err

    def _where(self, task) -> str:
        bbox = getattr(task, "bbox", None)
        return f"{self.name} (task {bbox})" if bbox is not None else self.name


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
    """
    effects = tuple(effects)
    assert kind in KINDS, kind
    assert family in FAMILIES, family
    assert all(e in EFFECTS for e in effects), effects
    assert dry_run in ("skip", "self"), dry_run
    assert dry_run == "skip" or effects, f"{name}: dry_run='self' without effects"

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
        signature = inspect.signature(fn).parameters
        wants_config = "config" in signature
        wants_request = "request" in signature

        def callback(**kwargs):
            from chunkflow.context import Request

            stage_name = kwargs.pop("name")
            config = _run_config()
            declared = context(**kwargs) if context is not None else None
            inputs = kwargs.get("input_chunk_name") or ()
            request = Request()
            if wants_config:
                kwargs["config"] = config
            if wants_request:
                kwargs["request"] = request

            def bound(task):
                return fn(task, **kwargs)

            skip = config.dry_run and bool(effects) and dry_run == "skip"
            return Stage(
                stage_name,
                kind,
                bound,
                effects=effects,
                dry_run=skip,
                context=declared,
                request=request,
                inputs=(inputs,) if isinstance(inputs, str) else tuple(inputs),
            )

        doc = inspect.getdoc(fn) or ""
        command = click.Command(
            name,
            callback=callback,
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


def plan_context(stages: list[Stage]) -> None:
    """Give every stage what the stages after it need (`chunkflow.context.plan`)."""
    from chunkflow.context import plan

    for stage, planned in zip(stages, plan([stage.context for stage in stages])):
        if stage.request is not None:
            stage.request.needs, stage.request.reads = planned.needs, planned.reads


def reader_context(output_chunk_name, **_):
    """A reader writes one chunk and reads none: requests for its chunk stop here."""
    from chunkflow.context import Context

    return Context((), (output_chunk_name,))


def read_with_context(read, base, grown):
    """`read(box, clip)` of the base box grown by the context operators downstream need.

    The grown box is read clipped to the data (where it ends, those operators pad or refuse);
    the base box itself must lie inside the data, as a plain cutout must.
    """
    if grown is None or base.contains(grown):
        return read(base, False)
    grown = grown.union(base)  # what the user asked for, whatever the operators after need
    chunk = read(grown, True)
    if not chunk.bbox.contains(base):
        raise ChunkflowError(
            f"cutout {base} is outside the data, which covers only {chunk.bbox} of {grown}"
        )
    return chunk


def _run_config() -> RunConfig:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    obj = getattr(root, "obj", None)
    return obj if isinstance(obj, RunConfig) else RunConfig()


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
