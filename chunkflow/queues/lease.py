"""A leased task message, its heartbeat, and what becomes of it: deleted, released or dead."""

from __future__ import annotations

import logging
import threading

from chunkflow.errors import ChunkflowError

logger = logging.getLogger(__name__)

# Leases held by this process and not yet settled: released at once when the process is told
# to stop (SIGTERM, Ctrl-C), so another worker takes the task without waiting for it to expire.
_HELD: set[Lease] = set()


class Lease:
    """Holds a message invisible to other workers; a heartbeat renews it while work goes on."""

    def __init__(self, queue, message, visibility_timeout: float):
        self.queue = queue
        self.body = message.body
        self.handle = message.handle
        self.attempts = message.attempts
        self.visibility_timeout = visibility_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        # once settled: "deleted", "released", "dead", or "lost" (another worker had taken it)
        self.outcome: str | None = None
        _HELD.add(self)

    def start_heartbeat(self) -> None:
        """Renew the lease every third of the visibility timeout until stopped."""
        self._thread = threading.Thread(target=self._beat, daemon=True, name="chunkflow-lease")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.visibility_timeout / 3):
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self.handle = self.queue.extend(self.handle, self.visibility_timeout)
                except ChunkflowError as err:
                    self.lost = True
                    logger.warning("task %s: %s", self.body, err)
                    return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _settle(self, outcome: str, action) -> bool:
        self.stop()
        with self._lock:
            if self.outcome is not None:
                return False
            _HELD.discard(self)
            done = action() and not self.lost
            self.outcome = outcome if done else "lost"
            return done

    def delete(self) -> bool:
        """Delete the message (the task is done); False if the lease had been lost."""
        return self._settle("deleted", lambda: self.queue.delete(self.handle))

    def release(self) -> bool:
        """Make the message visible again at once (retry it); False if the lease was lost."""
        return self._settle("released", lambda: self.queue.release(self.handle))

    def dead_letter(self, reason: str) -> bool:
        """Move the message to the dead-letter place with the reason."""
        return self._settle(
            "dead", lambda: self.queue.dead_letter(self.handle, reason, self.body or "")
        )


def forget(lease: Lease) -> None:
    """Stop tracking a lease left to expire on its own (its task was processed, not deleted)."""
    _HELD.discard(lease)


def release_held() -> list[str]:
    """Release every lease this process holds; the bodies of those released."""
    released = []
    for lease in list(_HELD):
        try:
            if lease.release():
                released.append(lease.body)
        except ChunkflowError as err:
            logger.warning("task %s: could not release its lease (%s)", lease.body, err)
    return released
