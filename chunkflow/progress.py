"""Progress bars for long work, on stderr, only where a person is watching.

A bar shows when stderr is a terminal and the `chunkflow` logger lets INFO through (so
`--quiet` and `--log-level warning` turn bars off); in pipes, files, Slurm logs and containers
nothing is drawn. `CHUNKFLOW_PROGRESS=1` or `=0` overrides the choice.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

__all__ = ["progress", "progress_enabled"]


def progress_enabled() -> bool:
    """Whether bars are drawn now (see the module docstring)."""
    forced = os.environ.get("CHUNKFLOW_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    if not logging.getLogger("chunkflow").isEnabledFor(logging.INFO):
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress(
    iterable: Iterable | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    min_items: int = 2,
):
    """Wrap `iterable` in a tqdm bar on stderr (a no-op bar when bars are off).

    Bars with fewer than `min_items` known items are not drawn: one item needs no bar.
    """
    from tqdm import tqdm

    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    disable = not progress_enabled() or (total is not None and total < min_items)
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        disable=disable,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.5,
    )
