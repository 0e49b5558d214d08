"""The task: what flows from one operator to the next.

A `Task` is a dict of named items (chunks, bounding boxes, numbers; the default name is
`chunk`) with three pieces of state beside the items:

- `bbox`: the region this task covers (set by a task generator or by the first reader),
- `log`: per-operator timers and other facts; `chunkflow.logs.task_log_record` turns it, with
  the bbox and skip state, into the one log file schema,
- skip state: a skipped task passes compute operators untouched and still reaches finalizers
  (operators that must always run, like deleting the queue message). `skip_to` names an operator
  at which processing resumes; while that operator runs, `resumed_from` holds the skip's
  reason (so `save` knows that the chunks it was given are not the output of the chain).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox

__all__ = ["Task", "DEFAULT_CHUNK_NAME"]

DEFAULT_CHUNK_NAME = "chunk"


class Task(dict):
    """Named items plus `bbox`, `log` and skip state."""

    def __init__(self, bbox: BoundingBox | None = None, **items):
        super().__init__(**items)
        self.bbox = bbox
        self.log: dict = {"timer": {}}
        self.skip_reason: str | None = None
        self.skip_to: str | None = None
        self.resumed_from: str | None = None  # see resume()
        self.lease = None  # the queue message of a fetched task (chunkflow.queues.lease.Lease)
        # An error in an operator fails only this task when its source can retry it (a queue):
        # the task then passes every later operator, finalizers included, and the source
        # decides its fate. Otherwise the error stops the run.
        self.contain_errors = False
        self.error: str | None = None
        # chunk name -> the box a reader was asked for before growing it by the context that
        # operators downstream need (chunkflow.context): what those operators output
        self.bases: dict[str, BoundingBox] = {}

    # skip state -------------------------------------------------------------------------------
    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None

    def skip(self, reason: str, to: str | None = None) -> None:
        """Mark the task skipped; if `to` names an operator, processing resumes there."""
        self.skip_reason = reason
        self.skip_to = to

    @property
    def failed(self) -> bool:
        return self.error is not None

    def fail(self, error: str) -> None:
        """Mark the task failed: no later operator runs on it."""
        self.error = error
        self.skip_reason = f"failed: {error}"
        self.skip_to = None

    def resume(self) -> None:
        """Unskip the task, just before the operator named by `skip_to` runs.

        The skip's reason stays in `resumed_from` until that operator's `timer` block ends, and
        in the log as "resumed" (operator and reason).
        """
        if self.skip_reason is not None:
            self.log["resumed"] = {"operator": self.skip_to, "reason": self.skip_reason}
        self.resumed_from = self.skip_reason
        self.skip_reason = None
        self.skip_to = None

    # items ------------------------------------------------------------------------------------
    def chunk(self, name: str) -> Chunk:
        """The chunk called `name`; a clear error if there is none."""
        if name not in self:
            held = ", ".join(sorted(self)) or "nothing"
            raise ChunkflowError(f"no chunk named {name!r} in the task (it holds: {held})")
        value = self[name]
        if not isinstance(value, Chunk):
            raise ChunkflowError(f"{name!r} is a {type(value).__name__}, not a chunk")
        return value

    def chunks(self, names) -> list[Chunk]:
        return [self.chunk(n) for n in names]

    def set_bbox_if_missing(self, bbox: BoundingBox) -> None:
        if self.bbox is None:
            self.bbox = bbox

    # log --------------------------------------------------------------------------------------
    @contextmanager
    def timer(self, name: str):
        """Add the wall time of the block to `log['timer'][name]` (seconds)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            timers = self.log["timer"]
            timers[name] = timers.get(name, 0.0) + time.perf_counter() - start
            self.resumed_from = None  # the operator that resumed the task is done

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"Task(bbox={self.bbox}, {items})"
