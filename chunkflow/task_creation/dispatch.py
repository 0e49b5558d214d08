"""Where a task grid goes: a queue, a task file (or both), else down the chain one at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from chunkflow.errors import ParameterError

TASK_FILE_SUFFIXES = (".npy", ".txt")


class TaskSink:
    """A queue (`queue_name`) and/or a task file (`task_file`) that tasks are sent to.

    `open` checks both before anything is written anywhere (a queue that cannot be reached, or
    that already holds messages without `append`, fails first); `send` sends.
    """

    def __init__(self, queue_name=None, task_file=None, endpoint_url=None, append=False):
        self.queue_name = queue_name
        self.task_file = task_file
        self.endpoint_url = endpoint_url
        self.append = append
        self._queue = None

    @property
    def streams(self) -> bool:
        """No queue and no file: the tasks go down the chain."""
        return not (self.queue_name or self.task_file)

    def check(self) -> TaskSink:
        """Refuse a task file name that says no format."""
        if self.task_file and not self.task_file.endswith(TASK_FILE_SUFFIXES):
            raise ParameterError(f"`task_file` {self.task_file}: expected a .npy or .txt name")
        return self

    def open(self) -> TaskSink:
        self.check()
        if self.queue_name and self._queue is None:
            from chunkflow.queues import open_task_queue

            self._queue = open_task_queue(self.queue_name, self.endpoint_url, self.append)
        return self

    def send(self, bboxes: Sequence, dry_run: bool = False) -> list[str]:
        """Send the tasks; what was done, one line per place. A dry run sends nothing and
        opens nothing."""
        if dry_run:
            return [f"dry run, {len(bboxes)} tasks not sent"]
        self.open()
        done = []
        if self._queue is not None:
            self._queue.send((b.string for b in bboxes), total=len(bboxes))
            done.append(f"sent {len(bboxes)} tasks to {self.queue_name}")
        if self.task_file:
            from chunkflow.queues import write_task_file

            write_task_file(self.task_file, bboxes)
            done.append(f"wrote {len(bboxes)} tasks to {self.task_file}")
        return done


def stream(bboxes: Sequence, mip: int) -> Iterator:
    """A task per bbox, with a progress bar, for the operators after a source."""
    from chunkflow.progress import progress
    from chunkflow.task import Task

    for bbox in progress(bboxes, desc="tasks", unit="task"):
        task = Task(bbox=bbox)
        task.log["mip"] = mip
        yield task
