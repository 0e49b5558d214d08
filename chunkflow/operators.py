"""Operators made of library functions and generators, for chains built in Python.

`op` makes an operator of a library function over chunks::

    from chunkflow.operators import op
    from chunkflow.pipeline import Pipeline
    from chunkflow.segmentation.labels import threshold, connected_components

    pipeline = Pipeline([op(threshold, "image", "mask", value=0.5),
                         op(connected_components, "mask", "seg")])
    [task] = pipeline.process(image=array, voxel_size=(40, 4, 4))

and of a generator, a source (its chunks, boxes or tasks become the tasks of the chain) or a
stream operator (one result per chunk it takes, in order)::

    def tiles(path, depth):
        for z in range(0, 50, depth):
            yield read_h5(path, bbox=BoundingBox((z, 0, 0), (z + depth, 100, 200)))

    def numbered_apart(segs):  # each tile's objects numbered after the tiles before it
        last = 0
        for seg in segs:
            yield seg + (seg > 0) * last
            last += int(seg.array.max())

    pipeline = Pipeline([op(tiles, kind="source", outputs="image", path=path, depth=10),
                         op(threshold, "image", "mask", value=0.5),
                         op(connected_components, "mask", "seg"),
                         op(numbered_apart, "seg", kind="stream")])
    for task in pipeline.stream():
        ...

The operators `op` makes follow the engine's rules (`chunkflow.pipeline`) like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.pipeline import Operator, RunConfig, as_names

__all__ = ["op"]


def op(
    fn: Callable,
    inputs: str | Sequence[str] | None = None,
    outputs: str | Sequence[str] | None = None,
    *,
    name: str | None = None,
    kind: str = "map",
    effects: Iterable[str] = (),
    dry_run: str = "skip",
    context=None,
    task_bbox: str | None = None,
    **params,
) -> Operator:
    """A library function over chunks as an operator of any kind, `fn(..., **params)`.

    `inputs` name the chunks `fn` is given and `outputs` the names its results are stored
    under (a result is a chunk, or a tuple with one per output); the operator's name defaults
    to the function's. By `kind`:

    - ``map`` (default): `fn(*input chunks)` returns the result. `inputs` default to
      ``"chunk"``, `outputs` to the first input (replaced); with `outputs=()` the result is
      dropped, as for a writer, which declares ``effects=("writes",)``.
    - ``finalizer``: like map, and also run for skipped tasks.
    - ``source``: `fn(*input chunks)` (none by default) yields the new tasks that replace the
      task it is given (the chain's first, empty one): each item a `Task` as it is, a
      `BoundingBox` (a task covering it, for readers to fill) or a result, stored under
      `outputs` (default ``"chunk"``) in a new task covering its first chunk.
    - ``stream``: `fn(items)` is given the input chunks of the tasks that reach it, one item
      per task (a tuple for several inputs), and yields one result per item, in order, when
      it likes: it may take several before it answers (a batch across tasks, a running
      statistic). Each result goes into its own task, which then goes on. With `outputs=()`
      it is a sink: its tasks go on once it has taken them (when it next yields, or ends).
      Skipped and failed tasks pass by in their place; tasks it never takes do not go on.

    `effects` and `dry_run` are declared as for `Operator` and the engine enforces them
    alike: in a dry run an operator with effects does not run, unless it declares
    ``dry_run="self"``; then `fn` is also given ``dry_run=`` (True in a dry run) and must
    honour it (as `chunkflow.task_creation.leasing.lease_tasks` does).

    `task_bbox` names a keyword under which `fn` is also given the bounding box of the task
    (None when it has none): ``op(read_zarr, (), "image", task_bbox="bbox", store=path)``
    reads each task's box after a source of bare boxes such as a queue. A stream is then given
    ``(bbox, item)`` pairs, one per task.
    """
    from chunkflow.task import DEFAULT_CHUNK_NAME

    default = () if kind == "source" else DEFAULT_CHUNK_NAME
    inputs = as_names(default if inputs is None else inputs)
    if outputs is None:
        outputs = (DEFAULT_CHUNK_NAME,) if kind == "source" else inputs[:1]
    outputs = as_names(outputs)
    name = name or getattr(fn, "__name__", "operator").replace("_", "-")
    honours = dry_run == "self"  # fn(..., dry_run=) then
    if task_bbox is not None and (task_bbox in params or (honours and task_bbox == "dry_run")):
        raise ParameterError(f"`task_bbox` {task_bbox!r}: {name} is given that keyword already")

    def call(args, config, task=None):
        given = {"dry_run": config.dry_run} if honours else {}
        if task_bbox is not None and task is not None:
            given[task_bbox] = task.bbox
        return fn(*args, **params, **given)

    def run(arg, config=None):  # arg: the task, or the stream of a stream operator
        config = config or RunConfig()
        if kind == "stream":
            return _stream_results(
                lambda items: call((items,), config), arg, inputs, outputs, task_bbox is not None
            )
        if kind == "source":
            return _new_tasks(call(arg.chunks(inputs), config, arg), outputs)
        _store(arg, outputs, call(arg.chunks(inputs), config, arg))

    run.__name__ = name
    return Operator(
        name, run, kind, inputs, outputs, tuple(effects), dry_run, context, takes_config=honours
    )


def _store(task, outputs: tuple[str, ...], result) -> None:
    """Store `result` (a tuple with one per output for several) under `outputs`."""
    if not outputs:
        return
    results = (result,) if len(outputs) == 1 else tuple(result or ())
    if len(results) != len(outputs):
        raise ChunkflowError(f"returned {len(results)} result(s) for outputs {outputs}")
    for output, value in zip(outputs, results):
        task[output] = value


def _new_tasks(items, outputs: tuple[str, ...]) -> Iterator:
    """The tasks of the items a source yields (see `op`, kind ``source``)."""
    from chunkflow.geometry import BoundingBox
    from chunkflow.task import Task

    if items is None or isinstance(items, (Task, BoundingBox)) or hasattr(items, "__array__"):
        raise ChunkflowError(
            f"returned a {type(items).__name__}: a source yields its tasks (a generator)"
        )
    for item in items:
        yield _new_task(item, outputs)


def _new_task(item, outputs: tuple[str, ...]):
    """The task of an item a source yields: a Task, a BoundingBox or a result."""
    from chunkflow.geometry import BoundingBox
    from chunkflow.task import Task

    if isinstance(item, Task):
        return item
    if isinstance(item, BoundingBox):
        return Task(item)
    if not outputs:
        raise ChunkflowError(
            f"yielded a {type(item).__name__}: a source without outputs yields tasks or "
            "bounding boxes"
        )
    task = Task()
    _store(task, outputs, item)
    for output in outputs:
        bbox = getattr(task[output], "bbox", None)
        if isinstance(bbox, BoundingBox):
            task.bases[output] = bbox
            task.set_bbox_if_missing(bbox)
    return task


def _stream_results(
    fn: Callable, stream: Iterable, inputs, outputs, with_bbox: bool = False
) -> Iterator:
    """The tasks of `stream` with the results of `fn` over their input chunks (each item as
    a `(bbox, item)` pair with `with_bbox`), in order (see `op`, kind ``stream``)."""
    from collections import deque

    waiting: deque = deque()  # [task, answered] in the order they came
    taken = 0

    def items():
        nonlocal taken
        for task in stream:
            live = not (task.skipped or task.failed)
            waiting.append([task, not (live and outputs)])
            if live:
                taken += 1
                chunks = task.chunks(inputs)
                item = chunks[0] if len(chunks) == 1 else tuple(chunks)
                yield (task.bbox, item) if with_bbox else item

    answered = 0
    for result in fn(items()) or ():
        if outputs:
            slot = next((slot for slot in waiting if not slot[1]), None)
            if slot is None:
                raise ChunkflowError(
                    f"yielded result {answered + 1} for the {taken} item(s) it had taken: "
                    "a stream operator yields one result per item, in order"
                )
            _store(slot[0], outputs, result)
            slot[1] = True
            answered += 1
        while waiting and waiting[0][1]:
            yield waiting.popleft()[0]
    if outputs and answered != taken:
        raise ChunkflowError(
            f"yielded {answered} result(s) for the {taken} item(s) it took: a stream operator "
            "yields one result per item"
        )
    yield from (task for task, _ in waiting)
