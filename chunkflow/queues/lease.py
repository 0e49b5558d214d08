"""A leased task message and its heartbeat."""

from __future__ import annotations

import logging
import threading

from chunkflow.errors import ChunkflowError

logger = logging.getLogger("chunkflow")


class Lease:
    """Holds a message invisible to other workers; a heartbeat renews it while work goes on."""

    def __init__(self, queue, message, visibility_timeout: float):
        self.queue = queue
        self.body = message.body
        self.handle = message.handle
        self.visibility_timeout = visibility_timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

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

    def delete(self) -> bool:
        """Stop the heartbeat and delete the message; False if the lease had been lost."""
        self.stop()
        with self._lock:
            return self.queue.delete(self.handle) and not self.lost
