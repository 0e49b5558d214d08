"""The worker loop: lease tasks from a queue one at a time and settle each one.

Each task is leased, handed down the chain, and settled when the chain is done with it:

- deleted by `delete-task-in-queue` (done);
- failed in an operator: released at once for another try while it has been received at most
  `max_retries` times, then moved to the dead-letter place with the error (one failing task
  never stops the worker);
- a message that is not a task (malformed, empty, binary, unreadable) goes to the dead-letter
  place at once, with a warning naming it; so does a message received more than
  `max_retries + 1` times, whose workers all died before settling it.

On an empty queue the worker waits while tasks are leased by other workers (one of them may
die and its task come back), at most `lease_wait` seconds, and stops after `retry_times + 1`
empty polls with nothing leased. Its last line counts what it did and what is left; the run
fails when a task failed or was dead-lettered here, or when tasks were still leased elsewhere
after the whole wait (with `lease_wait` 0 they are only reported).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from chunkflow.errors import ChunkflowError

logger = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    visibility_timeout: int = 1800
    wait_seconds: int = 2
    retry_times: int = 2
    num: int = -1  # tasks to fetch; -1: until the queue is drained
    max_retries: int = 2
    stop_on_error: bool = False
    heartbeat: bool = True
    lease_wait: float | None = None  # None: the visibility timeout; 0: do not wait


@dataclass
class Tally:
    fetched: int = 0
    done: int = 0
    retry: int = 0  # failed here, released for another try
    dead: int = 0  # moved to the dead-letter place by this worker
    unsettled: int = 0  # processed but neither deleted nor failed (no delete-task-in-queue)
    leased_elsewhere: int = 0
    waited_out: bool = False  # waited the whole lease wait and tasks were still leased

    def line(self, queue_name: str, counts) -> str:
        unsettled = f", {self.unsettled} processed but not deleted" if self.unsettled else ""
        return (
            f"{queue_name}: {self.done} tasks done, {self.retry} failed and released for "
            f"retry, {self.dead} dead-lettered, {self.leased_elsewhere} leased by other "
            f"workers{unsettled}; the queue holds {counts}"
        )

    @property
    def complete(self) -> bool:
        return not (self.retry or self.dead or self.waited_out)


class Worker:
    """Tasks from `queue`, settled as the module doc says; `tally` counts the outcomes."""

    def __init__(self, queue, queue_name: str, options: WorkerOptions, report=None):
        self.queue = queue
        self.queue_name = queue_name
        self.options = options
        self.tally = Tally()
        # report(line, complete) receives the closing line; by default an incomplete run
        # raises it as an error and a complete one logs it
        self.report = report or _report

    def tasks(self) -> Iterator:
        from chunkflow.progress import progress, progress_enabled
        from chunkflow.queues.lease import Lease

        options = self.options
        total = self.queue.count() if progress_enabled() and options.num < 0 else options.num
        bar = progress(desc=f"tasks from {self.queue_name}", total=total, unit="task")
        while options.num < 0 or self.tally.fetched < options.num:
            message = self._next_message()
            if message is None:
                break
            lease = Lease(self.queue, message, options.visibility_timeout)
            task = self._task(lease, message)
            if task is None:
                continue
            self.tally.fetched += 1
            if options.heartbeat:
                lease.start_heartbeat()
            try:
                yield task
            finally:
                lease.stop()
            self._settle(task, lease)
            bar.update()
        bar.close()
        self._finish()

    def _next_message(self):
        """The next leased message; None when the queue is drained (or the wait is over)."""
        options = self.options
        lease_wait = (
            options.visibility_timeout if options.lease_wait is None else options.lease_wait
        )
        empty, waiting_since = 0, None
        while True:
            message = self.queue.receive(options.visibility_timeout, options.wait_seconds)
            if message is not None:
                return message
            leased = self.queue.counts().leased
            self.tally.leased_elsewhere = leased
            if leased and lease_wait > 0:
                waiting_since = waiting_since or time.monotonic()
                if time.monotonic() - waiting_since < lease_wait:
                    logger.debug("fetch-task: waiting for %d tasks leased elsewhere", leased)
                    time.sleep(max(0.0, 1.0 - options.wait_seconds))
                    continue
                self.tally.waited_out = True
                return None
            empty += 1
            if empty > options.retry_times:
                return None

    def _task(self, lease, message):
        """The task of a message, or None after moving a message that is not one aside."""
        from chunkflow.queues import parse_body
        from chunkflow.task import Task

        problem = message.problem
        if problem is None:
            try:
                bbox = parse_body(message.body)
            except ChunkflowError as err:
                problem = str(err)
        if problem is None and message.attempts > self.options.max_retries + 1:
            problem = (
                f"received {message.attempts} times and never settled "
                "(its workers died or ran out of time)"
            )
        if problem is not None:
            self._dead_letter(lease, problem)
            return None
        task = Task(bbox=bbox)
        task.lease = lease
        task.contain_errors = not self.options.stop_on_error
        task.log["queue"] = self.queue_name
        task.log["attempt"] = message.attempts
        return task

    def _settle(self, task, lease) -> None:
        if lease.outcome == "deleted":
            self.tally.done += 1
        elif task.failed:
            if lease.attempts > self.options.max_retries:
                self._dead_letter(lease, task.error)
            else:
                lease.release()
                self.tally.retry += 1
                logger.warning(
                    "fetch-task: task %s failed (attempt %d of %d), released for retry",
                    task.bbox,
                    lease.attempts,
                    self.options.max_retries + 1,
                )
        else:  # no delete-task-in-queue in the chain, or the lease was lost
            from chunkflow.queues.lease import forget

            forget(lease)
            self.tally.unsettled += 1

    def _dead_letter(self, lease, reason: str) -> None:
        if lease.dead_letter(reason):
            self.tally.dead += 1
            shown = lease.body if lease.body is None or len(lease.body) < 80 else lease.body[:77]
            place = self.queue.dead_place
            logger.warning("fetch-task: message %r moved to %s: %s", shown, place, reason)

    def _finish(self) -> None:
        self.report(
            f"fetch-task: {self.tally.line(self.queue_name, self.queue.counts())}",
            self.tally.complete,
        )


def _report(line: str, complete: bool) -> None:
    if not complete:
        raise ChunkflowError(line)
    logger.info("%s", line)
