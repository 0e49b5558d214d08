"""The task: what flows from one operator to the next.

A `Task` is a dict of named items (chunks, bounding boxes, numbers; the default name is
`chunk`) with three pieces of state beside the items:

- `bbox`: the region this task covers (set by a task generator or by the first reader),
- `log`: per-operator timers and other facts, ready to be dumped as JSON,
- skip state: a skipped task passes compute operators untouched and still reaches finalizers
  (operators that must always run, like deleting the queue message). `skip_to` names an operator
  at which processing resumes.
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
        self.lease = None  # the queue message of a fetched task (chunkflow.queues.lease.Lease)

    # skip state -------------------------------------------------------------------------------
    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None

    def skip(self, reason: str, to: str | None = None) -> None:
        """Mark the task skipped; if `to` names an operator, processing resumes there."""
        self.skip_reason = reason
        self.skip_to = to

    def resume(self) -> None:
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

    def log_record(self) -> dict:
        """The task log as a JSON-ready dict."""
        record = dict(self.log)
        record["bbox"] = None if self.bbox is None else self.bbox.string
        if self.skipped:
            record["skipped"] = self.skip_reason
        return record

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"Task(bbox={self.bbox}, {items})"
