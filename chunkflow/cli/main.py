"""The `chunkflow` command: a chain of operators over a stream of tasks.

    chunkflow [GLOBAL OPTIONS] OPERATOR [OPTIONS] OPERATOR [OPTIONS] ...

The command line is parsed into a `chunkflow.pipeline.Pipeline`, which runs it: the chain
starts with one empty task; task generators (create-bbox, generate-tasks) turn it into many.
Errors in user input print one line and exit non-zero; `--verbose` adds the traceback.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
import traceback

import click

from chunkflow import __version__
from chunkflow.cli import (  # noqa: F401  (importing registers the operators)
    blockwise,
    flow,
    generate,
    image,
    inference,
    io_local,
    logs,
    mesh,
    precomputed,
    queue,
    regions,
    segmentation,
    setup_env,
    skeleton,
    viewer,
)

# isort: off
# The training family in `chunkflow --help`, in this order: targets, augmentations, train.
from chunkflow.cli import targets  # noqa: F401
from chunkflow.cli import augment  # noqa: F401
from chunkflow.cli import train  # noqa: F401

# isort: on
from chunkflow.cli.framework import ALIASES, FAMILIES, FAMILY_OF, OPERATORS
from chunkflow.errors import ChunkflowError, Terminated
from chunkflow.pipeline import Operator, OperatorError, Pipeline, RunConfig

logger = logging.getLogger(__name__)

LOG_LEVELS = ["debug", "info", "warning", "error"]


class ChainGroup(click.Group):
    """A chained group that resolves aliases and lists operators by family."""

    def get_command(self, ctx, cmd_name):
        return OPERATORS.get(ALIASES.get(cmd_name, cmd_name))

    def list_commands(self, ctx):
        return list(OPERATORS)

    def format_commands(self, ctx, formatter):
        aliases_of: dict[str, list[str]] = {}
        for alias, target in ALIASES.items():
            aliases_of.setdefault(target, []).append(alias)
        for family, title in FAMILIES.items():
            rows = []
            for name in OPERATORS:
                if FAMILY_OF[name] != family:
                    continue
                help_text = OPERATORS[name].get_short_help_str(limit=80)
                if name in aliases_of:
                    help_text += f" (alias: {', '.join(aliases_of[name])})"
                rows.append((name, help_text))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


@click.group(
    cls=ChainGroup,
    chain=True,
    invoke_without_command=True,
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 120,
        "terminal_width": 120,
    },
)
@click.version_option(__version__, "--version", prog_name="chunkflow")
@click.option(
    "--mip",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Default mip level for operators that read or write volumes.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Run the chain but change nothing: no writes, queue changes, checkpoints, metrics "
    "or logs.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and full tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Logging level (default info; debug with --verbose).",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the log to this file.",
)
@click.option(
    "--s3-endpoint",
    metavar="URL",
    default=None,
    help="S3-compatible server (MinIO, Ceph, moto) for every s3:// path of the run and of the "
    "processes it starts [default: $AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL, else AWS].",
)
@click.pass_context
def cli(ctx, mip, dry_run, verbose, quiet, log_level, log_file, s3_endpoint):
    """Process huge 3D images chunk by chunk with a chain of operators.

    Example: chunkflow read-h5 -f img.h5 -o image write-tif -i image -f img.tif
    Run `chunkflow OPERATOR --help` for the options of one operator.
    """
    level = log_level or ("debug" if verbose else "warning" if quiet else "info")
    setup_logging(level.upper(), log_file)
    if s3_endpoint is not None:
        if not s3_endpoint.startswith(("http://", "https://")):
            raise click.BadParameter(
                f"{s3_endpoint!r} is no URL: expected http(s)://HOST[:PORT]",
                param_hint="'--s3-endpoint'",
            )
        from chunkflow.aws import use_s3_endpoint

        use_s3_endpoint(s3_endpoint)
    ctx.obj = RunConfig(mip=mip, dry_run=dry_run, verbose=verbose, s3_endpoint=s3_endpoint)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.result_callback()
def run_chain(operators: list[Operator], **_):
    """Run the operators of the command line as a `Pipeline` under the run's options."""
    if not operators:
        return
    Pipeline(operators).run(config=click.get_current_context().obj)


def command_operator(name: str, /, **options) -> Operator:
    """The command-line operator `name` (or an alias) as a `chunkflow.pipeline.Operator`.

    Its options are given by parameter name (`file_name="a.h5"` for `--file-name a.h5`,
    `size=(8, 64, 64)` for `--size 8 64 64`), parsed and checked as on the command line;
    options not given take their defaults. The run's options (mip, dry run) are those of the
    `Pipeline` run it is part of.
    """
    command = OPERATORS.get(ALIASES.get(name, name))
    if command is None:
        raise ChunkflowError(f"no operator named {name!r} (see `chunkflow --help`)")
    known = {param.name for param in command.params}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ChunkflowError(
            f"{name}: no option {', '.join(unknown)}; it takes {', '.join(sorted(known))}"
        )
    with click.Context(cli, obj=RunConfig()) as root:
        try:
            ctx = command.make_context(name, [], parent=root, default_map=options)
            return command.invoke(ctx)
        except click.ClickException as err:
            raise ChunkflowError(f"{name}: {err.format_message()}") from None


class _Formatter(logging.Formatter):
    """The log line, tracebacks included, without the credentials of URLs in it."""

    def format(self, record):
        from chunkflow.redact import redact

        record.elapsed = record.relativeCreated / 1000.0
        return redact(super().format(record))


class _StderrHandler(logging.StreamHandler):
    """Writes log lines above any progress bar instead of through it."""

    def emit(self, record):
        tqdm = sys.modules.get("tqdm")
        if tqdm is None or not getattr(tqdm.tqdm, "_instances", None):
            super().emit(record)
            return
        try:
            tqdm.tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def setup_logging(level: str, log_file: str | None) -> None:
    """Configure the package logger: every module's `getLogger(__name__)` propagates to it."""
    root = logging.getLogger("chunkflow")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = _Formatter("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    stderr = _StderrHandler(sys.stderr)
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    if log_file:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)
    root.setLevel(level)
    root.propagate = False


def _wants_verbose(argv: list[str]) -> bool:
    for token in argv:
        if token in ("-v", "--verbose"):
            return True
        if token in OPERATORS or token in ALIASES:
            return False
    return False


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `chunkflow` console script; returns the exit code.

    Whatever ends the run early (an error, Ctrl-C, SIGTERM), the queue leases this process
    holds are released at once, so other workers take those tasks without waiting.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = _wants_verbose(argv)
    start = time.perf_counter()
    previous = _install(signal.SIGTERM, _terminate)
    try:
        return _main(argv, verbose, start)
    finally:
        _install(signal.SIGTERM, previous)


def _install(signum, handler):
    """Set a signal handler where Python allows it (the main thread); the previous one."""
    try:
        return signal.signal(signum, handler)
    except ValueError:  # not the main thread (chunkflow called from a thread)
        return None


def _released() -> str:
    from chunkflow.queues.lease import release_held

    bodies = release_held()
    if not bodies:
        return ""
    return f"; released the lease of task{'s'[: len(bodies) != 1]} {', '.join(bodies)}"


def _main(argv: list[str], verbose: bool, start: float) -> int:
    try:
        cli.main(args=argv, prog_name="chunkflow", standalone_mode=False)
    except Terminated:
        _fail(f"terminated (SIGTERM){_released()}", verbose=False)
        return 143
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help())
        return 0
    except click.UsageError as err:
        where = f"{err.ctx.command.name}: " if err.ctx and err.ctx.parent else ""
        _fail(f"{where}{err.format_message()}", verbose=False)
        return err.exit_code
    except click.ClickException as err:
        _fail(err.format_message(), verbose=False)
        return err.exit_code
    except click.Abort:
        _fail(f"aborted{_released()}", verbose=False)
        return 130
    except (OperatorError, ChunkflowError) as err:
        unexpected = err.__cause__ is not None and not isinstance(err.__cause__, ChunkflowError)
        _fail(f"{err}{_released()}", verbose, hint=unexpected)
        return 1
    except KeyboardInterrupt:
        _fail(f"interrupted{_released()}", verbose=False)
        return 130
    except Exception as err:  # a bug, not bad input: still one line unless --verbose
        _fail(f"{type(err).__name__}: {err}{_released()}", verbose, hint=True)
        return 1
    logger.debug("finished in %.2f s", time.perf_counter() - start)
    return 0


def _fail(message: str, verbose: bool, hint: bool = False) -> None:
    """The error line (after the traceback with --verbose), without URL credentials."""
    from chunkflow.redact import redact

    if verbose:
        click.echo(redact(traceback.format_exc()), err=True, nl=False)
    suffix = " (run with --verbose for the traceback)" if hint and not verbose else ""
    click.echo(redact(f"chunkflow: error: {message}{suffix}"), err=True)


if __name__ == "__main__":
    sys.exit(main())
