"""Refuse up front what cannot fit in memory.

A request such as `create-chunk --size 10000 10000 10000` (a terabyte) would otherwise fail
deep inside numpy or torch, get the process killed by the kernel, or swap the machine to a
halt. `require_memory` compares what an allocation needs with the memory available now (the
machine's, and the container's cgroup limit when there is one) and raises a one-line error
naming both.
"""

from __future__ import annotations

import os

from chunkflow.errors import ChunkflowError

__all__ = ["available_memory", "format_bytes", "require_memory"]

# cgroup v2, then v1: the container's limit, what it uses, and its statistics (the page cache
# it can drop counts as available)
_CGROUPS = (
    ("/sys/fs/cgroup/", "memory.max", "memory.current", "inactive_file"),
    (
        "/sys/fs/cgroup/memory/",
        "memory.limit_in_bytes",
        "memory.usage_in_bytes",
        "total_inactive_file",
    ),
)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):  # missing, or "max" (no limit)
        return None


def _statistic(path: str, name: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == name:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping: the machine's available
    memory, or less under a container limit; None when it cannot be told."""
    candidates = []
    try:
        import psutil

        candidates.append(int(psutil.virtual_memory().available))
    except Exception:  # no psutil, or a platform it does not know
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, OSError, ValueError):
            pass
    for folder, limit_file, usage_file, reclaimable in _CGROUPS:
        limit, usage = _read_int(folder + limit_file), _read_int(folder + usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            usage -= _statistic(folder + "memory.stat", reclaimable)
            candidates.append(max(limit - usage, 0))
            break
    return min(candidates) if candidates else None


def format_bytes(count: float) -> str:
    """A byte count for people: 512 B, 3.0 MiB, 931.3 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def require_memory(nbytes: int, what: str) -> None:
    """Raise a one-line `ChunkflowError` when `what` needs more than the memory available."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise ChunkflowError(
            f"{what} needs {format_bytes(nbytes)} of memory, more than the "
            f"{format_bytes(available)} available"
        )
