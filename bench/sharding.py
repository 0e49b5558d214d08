"""Files and write time of a segmentation written unsharded against sharded.

The whole 512^3 pinky40 segmentation (data/cc3d_pinky40) as uint64, compressed_segmentation in
64^3 blocks, voxel size 40 8 8, into a local precomputed volume whose info `create-info` made:

* unsharded: one file per block (512 blocks);
* sharded (`create-info --sharded`, neuroglancer_uint64_sharded_v1 as igneous chooses it), with
  the default shard size (about 3.5 GB uncompressed: the volume is one shard) and with
  `--shard-bytes 134217728` (128 MiB: shards of 256^3 voxels, 8 of them).

Each volume is written by 8 tasks of 256^3 (`write_precomputed`, in this process, timed without
loading the data); sharded scales go through tensorstore, which merges a task's blocks into its
shard. Reported: the write time (the best of 2 runs, each into a new volume), the number of
files and bytes on disk, and that the volume reads back bit-exact. No target, for information.

`python bench/sharding.py` runs it standalone.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from blockwise import pinky40  # bench/blockwise.py: the 512^3 pinky40 labels, (z, y, x)

SIZE = 512
TASK = 256
BLOCK = 64
VOXEL_SIZE = (40, 8, 8)
MiB = 1 << 20
RUNS = 2  # the best of: a shared machine is noisy
VARIANTS = {
    "unsharded": [],
    "sharded, one shard (default size)": ["--sharded"],
    "sharded, 128 MiB shards": ["--sharded", "--shard-bytes", str(128 * MiB)],
}


def files_and_bytes(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file() and p.name != "info"]
    return len(files), sum(p.stat().st_size for p in files)


def write_in_tasks(labels: np.ndarray, url: str) -> float:
    from chunkflow.chunk import Chunk
    from chunkflow.io.precomputed import write_precomputed

    start = time.perf_counter()
    for z, y, x in itertools.product(range(0, SIZE, TASK), repeat=3):
        part = np.ascontiguousarray(labels[z : z + TASK, y : y + TASK, x : x + TASK])
        write_precomputed(Chunk(part, (z, y, x), VOXEL_SIZE, "segmentation"), url, create=False)
    return time.perf_counter() - start


def measure(ctx) -> list[dict]:
    """The rows, as keyword dicts for run.Row."""
    from chunkflow.geometry import BoundingBox
    from chunkflow.io.precomputed import read_precomputed

    labels = np.ascontiguousarray(pinky40()[:SIZE, :SIZE, :SIZE]).astype(np.uint64)
    rows = []
    for label, options in VARIANTS.items():
        times = []
        for run in range(RUNS):
            path = ctx.tmp / f"sharding-{len(rows)}-{run}"
            create = [ctx.ours, "-q", "create-info", "-v", f"file://{path}", "-d", "uint64"]
            create += ["-t", "segmentation", "-e", "compressed_segmentation"]
            create += ["-z", SIZE, SIZE, SIZE, "-b", BLOCK, BLOCK, BLOCK, "-s", *VOXEL_SIZE]
            subprocess.run([str(a) for a in (*create, *options)], check=True)
            times.append(write_in_tasks(labels, f"file://{path}"))
        seconds = min(times)
        files, size = files_and_bytes(path)
        back = read_precomputed(f"file://{path}", BoundingBox((0, 0, 0), (SIZE,) * 3))
        exact = bool(np.array_equal(np.asarray(back), labels))
        rows.append(
            dict(
                name=f"{'sharding 512^3 u64: ' if not rows else '  '}{label}",
                ours_s=seconds,
                detail={
                    "files": files,
                    "bytes": size,
                    "bit_exact": exact,
                    "tasks": 8,
                    "runs_s": times,
                },
                note=f"{files} files, {size / MiB:.1f} MiB{'' if exact else ', NOT bit-exact'}",
            )
        )
    return rows


def main() -> int:
    import tempfile
    from types import SimpleNamespace

    with tempfile.TemporaryDirectory(prefix="chunkflow-bench-sharding-") as tmp:
        ctx = SimpleNamespace(ours=Path(sys.executable).parent / "chunkflow", tmp=Path(tmp))
        rows = measure(ctx)
    for row in rows:
        print(f"{row['name']:<60} {row['ours_s']:8.3f} s  {row['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
