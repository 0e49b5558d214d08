"""Look at chunks in a browser: Neuroglancer for many layers, microviewer for one chunk.

Both viewers serve from this process on a loopback address by default and stop when the caller
closes them; `serve_for` keeps the process serving until a time limit or Ctrl-C. Importing this
package is light: neuroglancer and microviewer load only with their modules.
"""

from __future__ import annotations

import time

__all__ = ["LAYOUTS", "serve_for", "segment_ids"]

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
