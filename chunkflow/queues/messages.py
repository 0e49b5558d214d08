"""What every queue speaks: a leased `Message` and a queue's `Counts`.

The queues (`chunkflow.queues.local`, `chunkflow.queues.sqs`) return these and the package
(`chunkflow.queues`) opens the queues, so the layers run one way: messages -> local, sqs ->
the package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Message:
    """One leased message of a queue."""

    body: str | None  # None: the message could not be read (see `problem`)
    handle: str  # the lease: pass it to extend/delete/release/dead_letter
    attempts: int = 1  # times this message has been received, this time included
    problem: str | None = None  # why the body could not be read


@dataclass
class Counts:
    """How many messages a queue holds, by state."""

    pending: int  # waiting to be received
    leased: int  # received and not yet deleted (expired leases included)
    dead: int  # moved aside by dead_letter

    def __str__(self) -> str:
        return f"{self.pending} pending, {self.leased} leased, {self.dead} dead"
