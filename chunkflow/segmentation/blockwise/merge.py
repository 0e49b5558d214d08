"""The global step of a segmentation job, from every task's edges; and how far a job is."""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from chunkflow.errors import ChunkflowError
from chunkflow.segmentation.blockwise.plan import (
    ID_BITS,
    LOCAL_MASK,
    Plan,
    get_arrays,
    unfinished,
)

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# phase 3: the global merge


def merge(plan: Plan) -> dict:
    """Give every fragment of the volume its object id, from the tasks' edges only."""
    from chunkflow.io.files import list_files, put_files

    start = time.perf_counter()
    present = set(list_files(plan.work_path, "edges/"))
    bboxes = [bbox for _, bbox in plan.tasks()]
    missing = [b for b in bboxes if f"edges/{b}.npz" not in present]
    unfinished(plan, "segment-edges", "edges", missing)
    # One pass in task order: a task's edges join its fragments to its own and to those of
    # earlier tasks, whose offsets in the dense numbering are known by then.
    offsets = np.zeros(len(bboxes) + 1, dtype=np.uint64)
    columns = {"u": [], "v": [], "sum": [], "count": [], "forced": []}
    for index, bbox in enumerate(bboxes):
        data = get_arrays(plan, f"edges/{bbox}.npz")
        offsets[index + 1] = offsets[index] + np.uint64(data.pop("fragments"))
        small = offsets[index + 1] < 2**31  # int32 while it can: 10^8 edges are many bytes
        for end in ("u", "v"):
            dense = _dense(data.pop(end), offsets, index, bbox)
            columns[end].append(dense.astype(np.int32) if small else dense)
        for name, values in data.items():
            columns[name].append(values)
    num_fragments = int(offsets[-1])
    node_t = np.int32 if num_fragments < 2**31 else np.int64
    u, v = (np.concatenate(columns.pop(end)).astype(node_t, copy=False) for end in ("u", "v"))
    num_edges = len(u)
    if plan.mode == "agglomerate":
        from chunkflow.segmentation.regiongraph import mean_affinity_agglomeration

        sums = np.concatenate(columns.pop("sum"))
        contact = np.concatenate(columns.pop("count")).astype(np.float64)
        forced = np.concatenate(columns.pop("forced"))
        objects = mean_affinity_agglomeration(
            u, v, sums, contact, num_fragments, plan.threshold, forced=forced, overwrite=True
        )
    else:
        from chunkflow.segmentation.regiongraph import UnionFind

        sets = UnionFind(num_fragments)
        sets.union(u, v)
        objects = sets.labels()
    num_objects = int(objects.max()) if len(objects) else 0
    summary = {
        "fragments": num_fragments,
        "edges": num_edges,
        "objects": num_objects,
        "seconds": round(time.perf_counter() - start, 3),
    }
    put_files(
        plan.work_path,
        [
            ("merge/ids", objects.astype("<u8").tobytes()),
            ("merge/offsets", offsets.astype("<u8").tobytes()),
        ],
    )
    put_files(plan.work_path, [("merge/summary.json", json.dumps(summary, indent=2).encode())])
    logger.info(
        "segment-merge: %d fragments, %d edges -> %d objects in %.1f s",
        num_fragments,
        num_edges,
        num_objects,
        summary["seconds"],
    )
    return summary


def _dense(ids: np.ndarray, offsets: np.ndarray, index: int, bbox) -> np.ndarray:
    """Fragment ids -> their index in task order (int64); fragments of task `index` and of
    earlier tasks only, whose offsets are known."""
    task = (ids >> np.uint64(ID_BITS)).astype(np.int64)
    local = (ids & LOCAL_MASK).astype(np.int64)
    if len(ids) and (
        task.max() > index
        or local.min() < 1
        or (local > (offsets[task + 1] - offsets[task]).astype(np.int64)).any()
    ):
        raise ChunkflowError(
            f"edges of task {bbox} name fragments that do not exist; rerun segment-fragments "
            "and segment-edges for it"
        )
    return offsets[task].astype(np.int64) + local - 1


# ---------------------------------------------------------------------------------------------
# status


def status(plan: Plan) -> dict:
    """How far the job is: tasks done per phase, and whether the merge ran."""
    from chunkflow.io.files import get_file, list_files

    done = {}
    for phase, folder, suffix in (
        ("fragments", "faces", ".npz"),
        ("edges", "edges", ".npz"),
        ("relabel", "relabeled", ""),
    ):
        names = set(list_files(plan.work_path, f"{folder}/"))
        done[phase] = sum(f"{folder}/{b}{suffix}" in names for _, b in plan.tasks())
    summary = get_file(plan.work_path, "merge/summary.json")
    done["merge"] = json.loads(summary) if summary is not None else None
    done["tasks"] = plan.num_tasks
    return done


def unfinished_phases(done: dict, phases) -> list[str]:
    """The `phases` a job's `status` (`done`) shows unfinished: a per-task phase not done on
    every task, or a merge that has not run."""
    merged = done["merge"]
    return [p for p in phases if not (merged if p == "merge" else done[p] == done["tasks"])]
