"""A task queue in a folder, with the lease semantics of SQS.

Layout::

    QUEUE/pending/{seq}-{id}[~{n}]         a message waiting; the file holds the body
    QUEUE/leased/{seq}-{id}~{n}@{deadline} a leased message; deadline = epoch seconds
    QUEUE/dead/{seq}-{id}~{n}              a dead letter, and beside it {name}.error: why

`n` counts how many times the message has been received. Every state change is one
`os.rename`, which is atomic on a POSIX filesystem (and on NFS at the server): of two workers
renaming the same file, exactly one succeeds. A lease whose deadline has passed can be taken by
any worker, again by a rename, so a dead worker's task comes back after the visibility timeout.
Workers on several machines need clocks that agree to a second or so. A file in the queue that
is not a message (a stray file, a folder, an unreadable body) is received like one and then
moved to `dead/` by the worker, so it never blocks the queue.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid

from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.progress import progress
from chunkflow.queues.messages import Counts, Message


def _split(name: str) -> tuple[str, int]:
    """(base name, receive count) of a pending or dead message name."""
    base, _, count = name.rpartition("~")
    return (base, int(count)) if base and count.isdigit() else (name, 0)


def _split_leased(name: str) -> tuple[str, int, float] | None:
    """(base name, receive count, deadline) of a leased message name; None for a stray name."""
    rest, _, deadline = name.rpartition("@")
    try:
        expiry = float(deadline)
    except ValueError:
        return None
    return (*_split(rest), expiry) if rest else None


class LocalQueue:
    """The task queue in the folder `path` (the layout of the module doc); `create` makes the
    folders when missing, else a folder that is not a queue is refused."""

    def __init__(self, path: str, create: bool = False):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.pending = os.path.join(self.path, "pending")
        self.leased = os.path.join(self.path, "leased")
        self.dead = os.path.join(self.path, "dead")
        if create:
            for folder in (self.pending, self.leased, self.dead):
                os.makedirs(folder, exist_ok=True)
        elif not (os.path.isdir(self.pending) and os.path.isdir(self.leased)):
            raise ParameterError(f"local queue {self.path} does not exist (`create` creates it)")

    def __repr__(self) -> str:
        return f"LocalQueue({self.path})"

    @property
    def dead_place(self) -> str:
        """Where dead letters go, for messages."""
        return self.dead + "/"

    def send(self, bodies, total: int | None = None) -> None:
        """Queue `bodies`, any iterable of strings, all or none: each is written to a hidden
        folder of the queue as it comes (memory stays bounded however many there are), and
        only when every one is written are they renamed into pending/. A failure on the way
        (a full disk) queues nothing. `total` sizes the progress bar."""
        stamp = time.time_ns()
        staging = os.path.join(self.path, f".sending-{uuid.uuid4().hex[:12]}")
        os.makedirs(staging)
        try:
            names = enumerate(progress(bodies, desc="send tasks", total=total, unit="task"))
            for k, body in names:
                name = f"{stamp:020d}{k:012d}-{uuid.uuid4().hex[:8]}"
                with open(os.path.join(staging, name), "w") as f:
                    f.write(body)
            for entry in os.scandir(staging):
                os.rename(entry.path, os.path.join(self.pending, entry.name))
        except OSError as err:
            raise ChunkflowError(
                f"local queue {self.path}: cannot write the tasks ({err.strerror or err}); "
                "none was queued"
            ) from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)

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
        for name in self._oldest_pending():
            base, count = _split(name)
            target = os.path.join(self.leased, f"{base}~{count + 1}@{deadline}")
            if self._claim(os.path.join(self.pending, name), target):
                return self._message(target, count + 1)
        for leased in sorted(os.listdir(self.leased)):
            parsed = _split_leased(leased)
            source = os.path.join(self.leased, leased)
            if parsed is None:  # not a message name: lease it for good; the worker moves it
                target = os.path.join(self.leased, f"{leased}~1@{now + 1e9:.3f}")
                if self._claim(source, target):
                    return self._message(target, 1)
            elif parsed[2] < now:
                target = os.path.join(self.leased, f"{parsed[0]}~{parsed[1] + 1}@{deadline}")
                if self._claim(source, target):
                    return self._message(target, parsed[1] + 1)
        return None

    def _oldest_pending(self, batch: int = 1024) -> list[str]:
        """Waiting messages, oldest first, from the first `batch` the folder lists: a receive
        costs the same with a million tasks waiting (strict order among up to `batch`)."""
        with os.scandir(self.pending) as entries:
            return sorted(entry.name for entry, _ in zip(entries, range(batch)))

    @staticmethod
    def _claim(source: str, target: str) -> bool:
        try:
            os.rename(source, target)
            return True
        except FileNotFoundError:  # another worker was faster
            return False

    @staticmethod
    def _message(path: str, attempts: int) -> Message:
        try:
            with open(path, "rb") as f:
                return Message(f.read().decode("utf-8"), path, attempts)
        except (OSError, UnicodeDecodeError) as err:
            problem = f"unreadable ({type(err).__name__}: {err.args[-1] if err.args else err})"
            return Message(None, path, attempts, problem)

    @staticmethod
    def _stem(handle: str) -> str:
        return os.path.basename(handle).rpartition("@")[0]

    def extend(self, handle: str, visibility_timeout: float) -> str:
        """Renew a lease; returns the new handle (raises if the lease was lost)."""
        stem = self._stem(handle)
        target = os.path.join(self.leased, f"{stem}@{time.time() + visibility_timeout:.3f}")
        if not self._claim(handle, target):
            raise ChunkflowError(f"the lease of task {_split(stem)[0]} in {self.path} was lost")
        return target

    def delete(self, handle: str) -> bool:
        """Remove a leased message; False if its lease had already been taken over."""
        try:
            if os.path.isdir(handle) and not os.path.islink(handle):
                shutil.rmtree(handle)
            else:
                os.remove(handle)
            return True
        except FileNotFoundError:
            return False

    def release(self, handle: str) -> bool:
        """Make a leased message visible again at once; False if the lease was lost."""
        return self._claim(handle, os.path.join(self.pending, self._stem(handle)))

    def dead_letter(self, handle: str, reason: str, body: str = "") -> bool:
        """Move a leased message (the file itself: `body` is not needed) to dead/ with the
        reason beside it; False if the lease was lost."""
        os.makedirs(self.dead, exist_ok=True)
        target = os.path.join(self.dead, self._stem(handle))
        tmp = os.path.join(self.dead, f".{uuid.uuid4().hex}.tmp")
        with open(tmp, "w") as f:
            f.write(reason + "\n")
        if not self._claim(handle, target):
            os.remove(tmp)
            return False
        os.rename(tmp, target + ".error")
        return True

    def dead_letters(self) -> list[tuple[str, str]]:
        """(body, reason) of every dead letter, oldest first (unreadable bodies shown as such)."""
        out = []
        for name in sorted(self._dead_names()):
            message = self._message(os.path.join(self.dead, name), 0)
            try:
                with open(os.path.join(self.dead, name + ".error")) as f:
                    reason = f.read().strip()
            except OSError:
                reason = "(no reason recorded)"
            out.append((message.body if message.body is not None else message.problem, reason))
        return out

    def _dead_names(self) -> list[str]:
        if not os.path.isdir(self.dead):
            return []
        return [n for n in os.listdir(self.dead) if not n.endswith((".error", ".tmp"))]

    def peek(self, limit: int) -> list[str] | None:
        """Up to `limit` waiting bodies (negative: all), read without leasing them."""
        bodies = []
        for name in sorted(os.listdir(self.pending)):
            if 0 <= limit <= len(bodies):
                break
            message = self._message(os.path.join(self.pending, name), 0)
            if message.body is not None:
                bodies.append(message.body)
        return bodies

    def counts(self) -> Counts:
        return Counts(
            len(os.listdir(self.pending)), len(os.listdir(self.leased)), len(self._dead_names())
        )

    def count(self) -> int:
        """Messages not yet done: waiting or leased."""
        counts = self.counts()
        return counts.pending + counts.leased

    def purge(self) -> Counts:
        """Remove every message, dead letters included; returns what was there."""
        counts = self.counts()
        for folder in (self.pending, self.leased, self.dead):
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    path = os.path.join(folder, name)
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        try:
                            os.remove(path)
                        except FileNotFoundError:
                            pass
        return counts
