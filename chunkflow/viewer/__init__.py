"""Look at chunks in a browser: Neuroglancer for many layers, microviewer for one chunk.

Both viewers serve from this process on a loopback address by default and stop when the caller
closes them; `serve_for` keeps the process serving until a time limit or Ctrl-C. Importing this
package is light: neuroglancer and microviewer load only with their modules.

Whatever a browser or another client sends, the servers answer with a status and log one line
(`log_failure`); a traceback is logged only at the debug level (`--verbose`).
"""

from __future__ import annotations

import logging
import time

__all__ = ["LAYOUTS", "log_failure", "one_line_logs", "serve_for", "segment_ids"]

logger = logging.getLogger(__name__)

# Neuroglancer panel layouts.
LAYOUTS = ("4panel", "xy", "xz", "yz", "3d", "xy-3d", "xz-3d", "yz-3d")


def serve_for(seconds: float | None) -> bool:
    """Block for `seconds` (None: until Ctrl-C); True when Ctrl-C ended the wait."""
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while True:
            left = 3600.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.5))
    except KeyboardInterrupt:
        return True


def log_failure(what: str, exc_info) -> None:
    """Log a failed request as one warning line; the traceback only at the debug level."""
    _, error, _ = exc_info
    reason = f"{type(error).__name__}: {error}" if error is not None else "failed"
    debug = logger.isEnabledFor(logging.DEBUG)
    logger.warning("viewer: %s: %s", what, reason, exc_info=exc_info if debug else None)


class _OneLine(logging.Handler):
    """A server library's log records as one line of the chunkflow log."""

    def emit(self, record):
        lines = record.getMessage().splitlines() or ["(no message)"]
        if record.exc_info and record.exc_info[1] is not None:
            log_failure(lines[0], record.exc_info)
        else:
            logger.log(record.levelno, "viewer: %s", lines[0])


def one_line_logs(name: str) -> None:
    """Send the log of the server library `name` (e.g. tornado) to the chunkflow log, each
    record as one line: its uncaught request errors print no traceback on stderr."""
    server_logger = logging.getLogger(name)
    if not any(isinstance(h, _OneLine) for h in server_logger.handlers):
        server_logger.addHandler(_OneLine())
    server_logger.propagate = False


def segment_ids(array):
    """A (z, y, x) label array as unsigned ids, the types both viewers show as segments."""
    import numpy as np

    if array.dtype == np.bool_:
        return array.view(np.uint8)
    if array.dtype.kind == "i":
        return array.view(f"u{array.dtype.itemsize}")
    if array.dtype.kind != "u":
        return array.astype(np.uint64)
    return array
