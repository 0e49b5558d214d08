"""A task queue in a folder, with the lease semantics of SQS.

Layout::

    QUEUE/pending/{seq}-{id}             a message waiting; the file holds the body
    QUEUE/leased/{seq}-{id}@{deadline}   a leased message; deadline = epoch seconds

Every state change is one `os.rename`, which is atomic on a POSIX filesystem (and on NFS at the
server): of two workers renaming the same file, exactly one succeeds. A lease whose deadline has
passed can be taken by any worker, again by a rename, so a dead worker's task comes back after
the visibility timeout. Workers on several machines need clocks that agree to a second or so.
"""

from __future__ import annotations

import os
import time
import uuid

from chunkflow.errors import ChunkflowError
from chunkflow.progress import progress
from chunkflow.queues import Message


class LocalQueue:
    def __init__(self, path: str, create: bool = False):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.pending = os.path.join(self.path, "pending")
        self.leased = os.path.join(self.path, "leased")
        if create:
            os.makedirs(self.pending, exist_ok=True)
            os.makedirs(self.leased, exist_ok=True)
        elif not (os.path.isdir(self.pending) and os.path.isdir(self.leased)):
            raise ChunkflowError(
                f"local queue {self.path} does not exist (generate-tasks --queue-name creates it)"
            )

    def __repr__(self) -> str:
        return f"LocalQueue({self.path})"

    def send(self, bodies: list[str]) -> None:
        stamp = time.time_ns()
        for k, body in enumerate(progress(bodies, desc="send tasks", unit="task")):
            name = f"{stamp:020d}{k:08d}-{uuid.uuid4().hex[:8]}"
            tmp = os.path.join(self.path, f".{name}.tmp")
            with open(tmp, "w") as f:
                f.write(body)
            os.rename(tmp, os.path.join(self.pending, name))

    def receive(self, visibility_timeout: float, wait_seconds: float = 0) -> Message | None:
        """Lease the oldest waiting message, or an expired lease, waiting up to `wait_seconds`
        for one; None if there is none."""
        end = time.monotonic() + wait_seconds
        while True:
            message = self._receive(visibility_timeout)
            if message is not None or time.monotonic() >= end:
                return message
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def _receive(self, visibility_timeout: float) -> Message | None:
        now = time.time()
        deadline = f"{now + visibility_timeout:.3f}"
        for name in sorted(os.listdir(self.pending)):
            target = os.path.join(self.leased, f"{name}@{deadline}")
            if self._claim(os.path.join(self.pending, name), target):
                return self._message(target)
        for leased in sorted(os.listdir(self.leased)):
            name, _, expiry = leased.rpartition("@")
            if name and float(expiry) < now:
                target = os.path.join(self.leased, f"{name}@{deadline}")
                if self._claim(os.path.join(self.leased, leased), target):
                    return self._message(target)
        return None

    @staticmethod
    def _claim(source: str, target: str) -> bool:
        try:
            os.rename(source, target)
            return True
        except FileNotFoundError:  # another worker was faster
            return False

    @staticmethod
    def _message(path: str) -> Message:
        with open(path) as f:
            return Message(f.read(), path)

    def extend(self, handle: str, visibility_timeout: float) -> str:
        """Renew a lease; returns the new handle (raises if the lease was lost)."""
        name = os.path.basename(handle).rpartition("@")[0]
        target = os.path.join(self.leased, f"{name}@{time.time() + visibility_timeout:.3f}")
        if not self._claim(handle, target):
            raise ChunkflowError(f"the lease of task {name} in {self.path} was lost")
        return target

    def delete(self, handle: str) -> bool:
        """Remove a leased message; False if its lease had already been taken over."""
        try:
            os.remove(handle)
            return True
        except FileNotFoundError:
            return False

    def count(self) -> int:
        return len(os.listdir(self.pending)) + len(os.listdir(self.leased))
