"""The chain engine: operators over a stream of tasks, the same from Python and the CLI.

An `Operator` is a plain callable over a `Task` (or, for ``stream`` operators, over the stream
of tasks) with its declarations: the chunks it reads and writes, the context it needs
(`chunkflow.context.Context`) and its side effects. A `Pipeline` of operators runs them lazily,
one task at a time; the `chunkflow` command line only parses its operators into a Pipeline and
runs it, so every rule below holds the same for both.

Kinds of operators:

- ``map``: `fn(task)` changes the task in place. Skipped tasks pass untouched.
- ``source``: `fn(task)` returns an iterable of new tasks (a task generator, e.g. a grid of
  bounding boxes or a queue). Skipped tasks pass untouched.
- ``finalizer``: like map, but also runs for skipped tasks (delete the queue message, upload
  the log, mark the task complete).
- ``stream``: `fn(stream)` returns a new stream (full control, e.g. a sink that trains on all
  tasks at once).

Side effects are declared: ``effects=("writes",)`` and the like (see `EFFECTS`). In a dry run
(`RunConfig.dry_run`) an operator of any kind with effects does nothing but log, unless it
declares ``dry_run="self"``: then it runs and honours `config.dry_run` itself (a task source
that reads a queue without leasing, a planner that prints what it would write).

Failed tasks: when a task's source can retry it (`task.contain_errors`, set by queue workers),
an error in an operator fails only that task (`task.fail`); a failed task passes every later
operator untouched, finalizers included, and its source settles it. Otherwise the error stops
the run. Whatever the code an operator runs raises (a plugin's `sys.exit(0)` or own
`BaseException` included) is such an error; only Ctrl-C and SIGTERM end the run as themselves.

From Python, `chunkflow.operators.op` makes operators of library functions and generators.

This module imports neither click nor anything heavy: `chunkflow --help` must start fast.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from chunkflow.errors import STOPS, ChunkflowError

__all__ = [
    "EFFECTS",
    "KINDS",
    "Operator",
    "OperatorError",
    "Pipeline",
    "RunConfig",
    "Stage",
    "as_names",
]

logger = logging.getLogger(__name__)

KINDS = ("map", "source", "finalizer", "stream")

# Side effects an operator may declare.
EFFECTS = {
    "writes": "writes files or volumes",
    "queue": "changes a task queue (sends, leases, deletes)",
    "checkpoints": "writes model checkpoints",
    "metrics": "sends metrics (CloudWatch)",
    "logs": "writes task logs",
}

DRY_RUN_POLICIES = ("skip", "self")


@dataclass
class RunConfig:
    """Options of one run: the global options of a command line, or a Python run's."""

    mip: int = 0
    dry_run: bool = False
    verbose: bool = False
    s3_endpoint: str | None = None  # --s3-endpoint, for the commands we print to run elsewhere
    extras: dict = field(default_factory=dict)
    # (line, complete) from operators that report on the whole run (a queue worker's counts):
    # logged after the timing table; an incomplete one fails the run with its line
    closing: list = field(default_factory=list)


class OperatorError(Exception):
    """An error raised inside an operator, prefixed with the operator name and task bbox.

    Its message goes to the error line, the task log and dead letters: URL credentials in it
    (of an unexpected library error, say) are redacted here."""

    def __init__(self, message: str):
        from chunkflow.redact import redact

        super().__init__(redact(message))


def check_declaration(name: str, kind: str, effects: Sequence[str], dry_run: str) -> None:
    """Refuse an operator whose kind, effects or dry-run policy are not ours."""
    problems = []
    if kind not in KINDS:
        problems.append(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    unknown = [e for e in effects if e not in EFFECTS]
    if unknown:
        problems.append(f"effects {unknown} are not among {', '.join(EFFECTS)}")
    if dry_run not in DRY_RUN_POLICIES:
        problems.append(f"dry_run {dry_run!r} is not 'skip' or 'self'")
    elif dry_run == "self" and not effects:
        problems.append("dry_run='self' without effects")
    if problems:
        raise ChunkflowError(f"operator {name!r}: {'; '.join(problems)}")


def holds_back(effects: Sequence[str], dry_run: str, config: RunConfig) -> bool:
    """Whether an operator must not act in this run: the one dry-run rule, for every kind."""
    return bool(config.dry_run and effects and dry_run == "skip")


@dataclass
class Stage:
    """One operator in a running chain; `Pipeline` makes one per operator for every run.

    `dry_run` is True when this run is a dry run and this operator must not act (`holds_back`).
    `context` (a `chunkflow.context.Context`) declares the chunks it reads and writes and the
    context it needs; `request` is what the chain's plan asks of it (`plan_context`). A stage
    without a context that reads chunks by name (`inputs`) sees them over their base box: the
    context grown for operators further down is not its to see.
    """

    name: str
    kind: str
    fn: Callable
    effects: tuple[str, ...] = ()
    dry_run: bool = False
    context: object = None
    request: object = None
    inputs: tuple[str, ...] = ()

    def __call__(self, stream: Iterable) -> Iterator:
        if self.kind == "stream":
            return self._stream(stream)
        return self._tasks(stream)

    def _held_back(self, task=None) -> bool:
        """In a dry run an operator with effects logs what it did not do: here, for all kinds."""
        if not self.dry_run:
            return False
        if task is None:
            logger.info("%s: dry run, not run (%s)", self.name, ", ".join(self.effects))
        else:
            logger.info("%s: dry run, nothing done for task %s", self.name, task.bbox)
        return True

    def _stream(self, stream: Iterable) -> Iterator:
        if self._held_back():
            yield from stream
            return
        iterator = iter(self.fn(stream))
        while True:
            try:
                task = self._call(next, iterator)
            except StopIteration:
                return
            yield task

    def _tasks(self, stream: Iterable) -> Iterator:
        for task in stream:
            if task.failed:
                yield task
                continue
            if task.skipped and task.skip_to == self.name:
                logger.debug("%s: resuming skipped task %s", self.name, task.bbox)
                task.resume()
            if (task.skipped and self.kind != "finalizer") or self._held_back(task):
                yield task
            elif self.kind == "source":
                yield from self._generate(task)
            else:
                yield self._map(task)

    def _map(self, task):
        try:
            with task.timer(self.name):
                self._run(task)
        except OperatorError as err:
            if not task.contain_errors:
                raise
            logger.error("%s", err, exc_info=logger.isEnabledFor(logging.DEBUG))
            task.fail(str(err))
        return task

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


@dataclass
class Operator:
    """An operator: `fn` over a task (a stream for ``stream``) with its declarations.

    `inputs` and `outputs` name the chunks it reads and writes;
    `effects` its side effects (keys of `EFFECTS`); `dry_run` is "skip" (a dry run does not run
    it) or "self" (it runs and honours `RunConfig.dry_run` itself). `context` is its
    `chunkflow.context.Context` (the chunks it reads and writes, the context it needs); without
    one, its inputs are cropped back to their base box while it runs (see `Stage`). `request`,
    a `chunkflow.context.Request` that `fn` may read, is filled in by every run's plan; with
    `takes_config`, `fn` is called with the run's `RunConfig` as `config` (its mip, dry run).
    """

    name: str
    fn: Callable
    kind: str = "map"
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    dry_run: str = "skip"
    context: object = None
    request: object = None
    takes_config: bool = False  # fn(task, config=RunConfig of the run)

    def __post_init__(self):
        self.inputs, self.outputs = as_names(self.inputs), as_names(self.outputs)
        self.effects = tuple(self.effects)
        check_declaration(self.name, self.kind, self.effects, self.dry_run)

    def __call__(self, task_or_stream, config: RunConfig | None = None):
        """`fn` on one task (a stream), as it is: the rules of a run (dry run, skipped and
        failed tasks, errors named by operator) are a `Pipeline`'s."""
        if self.takes_config:
            return self.fn(task_or_stream, config=config or RunConfig())
        return self.fn(task_or_stream)

    def stage(self, config: RunConfig) -> Stage:
        """This operator as a stage of one run under `config`."""
        fn = functools.partial(self.fn, config=config) if self.takes_config else self.fn
        return Stage(
            self.name,
            self.kind,
            fn,
            effects=self.effects,
            dry_run=holds_back(self.effects, self.dry_run, config),
            context=self.context,
            request=self.request,
            inputs=self.inputs,
        )

    def process(self, *values, voxel_offset=None, voxel_size=None, dry_run: bool = False):
        """Run this operator alone on chunks or arrays (one per input, in order) and return
        its output: a chunk, a tuple of chunks for several outputs, None for none.

        Arrays become chunks at `voxel_offset` with `voxel_size` (`Chunk.from_array`)."""
        if len(values) != len(self.inputs):
            raise ChunkflowError(
                f"{self.name} reads {len(self.inputs)} chunk(s) ({', '.join(self.inputs)}), "
                f"got {len(values)}"
            )
        items = dict(zip(self.inputs, values))
        tasks = Pipeline([self]).process(
            voxel_offset=voxel_offset, voxel_size=voxel_size, dry_run=dry_run, **items
        )
        results = tuple(task.get(name) for task in tasks for name in self.outputs)
        return results[0] if len(results) == 1 else (results or None)


def as_names(names) -> tuple[str, ...]:
    """One chunk name or several as a tuple of names."""
    return (names,) if isinstance(names, str) else tuple(names or ())


@dataclass
class RunSummary:
    """What a run did: tasks out of the chain, how many failed, seconds per operator."""

    count: int = 0
    failed: int = 0
    totals: dict = field(default_factory=dict)  # operator name -> [calls, seconds]


class Pipeline:
    """Operators chained over a stream of tasks: what the `chunkflow` command line runs.

    `stream` yields the tasks that come out of the chain, one at a time; `run` pulls them all
    (logging each task and a timing table, as the command line does); `process` runs one task
    made of named chunks or arrays and returns what came out.
    """

    def __init__(self, operators: Iterable[Operator]):
        self.operators = list(operators)
        for operator in self.operators:
            if not isinstance(operator, Operator):
                raise ChunkflowError(
                    f"a pipeline takes operators (chunkflow.operators.op or Operator), "
                    f"got {type(operator).__name__}"
                )

    def stages(self, config: RunConfig) -> list[Stage]:
        """The stages of one run: distinct names, the context plan given to each."""
        stages = [operator.stage(config) for operator in self.operators]
        unique_names(stages)
        plan_context(stages)
        return stages

    def stream(self, tasks: Iterable | None = None, config: RunConfig | None = None) -> Iterator:
        """The tasks out of the chain, lazily; the chain starts with one empty task."""
        from chunkflow.task import Task

        stream = iter([Task()] if tasks is None else tasks)
        for stage in self.stages(config or RunConfig()):
            stream = stage(stream)
        return stream

    def run(self, tasks: Iterable | None = None, config: RunConfig | None = None) -> RunSummary:
        """Pull every task through the chain, log each and the timing table, then the
        operators' closing lines; an incomplete one is an error."""
        config = config or RunConfig()
        start = time.perf_counter()
        summary = RunSummary()
        for task in self.stream(tasks, config):
            _count(summary, task)
        _log_totals(summary, time.perf_counter() - start)
        close(config)
        return summary

    def process(
        self, *, voxel_offset=None, voxel_size=None, dry_run: bool = False, **items
    ) -> list:
        """Run one task holding `items` (chunk name -> Chunk or array) and return the tasks
        that come out. Arrays become chunks at `voxel_offset` with `voxel_size`."""
        from chunkflow.chunk import Chunk
        from chunkflow.task import Task

        task = Task()
        for name, value in items.items():
            task[name] = Chunk.from_array(value, voxel_offset, voxel_size, name=name)
            task.bases[name] = task[name].bbox
        config = RunConfig(dry_run=dry_run)
        tasks = list(self.stream([task], config))
        close(config)
        return tasks


def unique_names(stages: list[Stage]) -> None:
    """Give repeated operators distinct names (`save-h5`, `save-h5#2`) so logs do not collide."""
    seen: dict[str, int] = {}
    for stage in stages:
        count = seen.get(stage.name, 0) + 1
        seen[stage.name] = count
        if count > 1:
            stage.name = f"{stage.name}#{count}"


def plan_context(stages: list[Stage]) -> None:
    """Give every stage what the stages after it need (`chunkflow.context.plan`)."""
    from chunkflow.context import plan

    for stage, planned in zip(stages, plan([stage.context for stage in stages])):
        if stage.request is not None:
            stage.request.needs, stage.request.reads = planned.needs, planned.reads


def close(config: RunConfig) -> None:
    """Log the closing lines of the run; an incomplete one fails it with its line."""
    for line, complete in config.closing:
        if complete:
            logger.info("%s", line)
    failed = [line for line, complete in config.closing if not complete]
    if failed:
        raise ChunkflowError("; ".join(failed))


def _count(summary: RunSummary, task) -> None:
    summary.count += 1
    timers = task.log["timer"]
    for name, seconds in timers.items():
        entry = summary.totals.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += seconds
    if task.failed:
        summary.failed += 1
        logger.info("task %s failed, left to its source to retry", task.bbox)
        return
    state = f" skipped ({task.skip_reason})" if task.skipped else ""
    logger.info(
        "task%s%s: %s",
        f" {task.bbox}" if task.bbox else "",
        state,
        ", ".join(f"{k} {v:.3f}s" for k, v in timers.items()),
    )


def _log_totals(summary: RunSummary, wall_seconds: float) -> None:
    if not summary.totals:
        return
    from chunkflow.logs import run_timing_table

    table = run_timing_table(summary.totals, wall_seconds)
    count = summary.count
    failures = f" ({summary.failed} failed)" if summary.failed else ""
    logger.info("%d task%s%s; time per operator:\n%s", count, "s"[: count != 1], failures, table)
