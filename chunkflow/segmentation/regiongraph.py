"""Region adjacency graphs: contact statistics from voxels, and merging on the graph alone.

A region adjacency graph (RAG) has one node per fragment and one edge per pair of touching
fragments, annotated with the sum and the number of the affinities across their contact (the
voxel edges (p, p - e_c) whose two voxels carry the two fragments; label 0 takes no part).

`mean_affinity_agglomeration` merges such a graph exactly as waterz merges a volume with its
default scoring function, `OneMinus<MeanAffinity>`: repeatedly the edge of lowest score
1 - mean affinity is contracted while that score is below the threshold, and the statistics of
edges that become parallel are added. Edges of equal score merge in the order of their
index, and two edges joined into one keep the higher index (waterz leaves such ties to its
heap); sums are fixed-point, so no rounding depends on the order of merges. Given a voxel of
each fragment, it merges block by block, touching memory a block at a time, with the same
result. It needs only the graph, so a volume of any size can be agglomerated from per-chunk
contact statistics, in memory proportional to fragments and contacts. `UnionFind` joins
equivalent ids (connected components of a graph), streaming.

Both run compiled (numba, chunkflow.segmentation.graphkernels).
"""

from __future__ import annotations

import numpy as np

from chunkflow.errors import ChunkflowError

__all__ = [
    "contacts",
    "plane_contacts",
    "cells",
    "mean_affinity_agglomeration",
    "UnionFind",
]


# ---------------------------------------------------------------------------------------------
# contact statistics from voxels


def contacts(labels: np.ndarray, affs: np.ndarray, num_ids: int | None = None):
    """Contact statistics of the labels in one box: for every pair of touching labels, the sum
    and number of affinities across the contact (voxel edges inside the box only).

    One compiled pass over the voxels into tables of label pairs (graphkernels.contact_table):
    time linear in the voxels, memory in the pairs, not in the voxel edges (a sort of the
    voxel edges took about 50 bytes per voxel and grew in time per voxel with the box).

    Args:
        labels: (z, y, x) integer labels, 0 = none.
        affs: (3, z, y, x) affinities; channel c of voxel p links p and p - e_c.
        num_ids: labels are all below this (default: the largest label + 1).

    Returns:
        u, v (uint64, u < v), affinity sums (float64), voxel-edge counts (int64), sorted by (u, v).
    """
    from chunkflow.segmentation import graphkernels

    largest = int(labels.max()) if labels.size else 0
    if num_ids is None:
        num_ids = largest + 1
    if largest >= num_ids or (labels.size and labels.dtype.kind == "i" and labels.min() < 0):
        raise ChunkflowError(f"contacts: labels must lie in 0 .. {num_ids - 1}")
    if num_ids > 1 << 31:  # a pair's key, min * num_ids + max, must fit in 63 bits
        ids, inverse = np.unique(labels, return_inverse=True)
        if ids[0] != 0:
            ids, inverse = np.concatenate([[0], ids]), inverse + 1
        u, v, sums, counts = contacts(inverse.reshape(labels.shape), affs, len(ids))
        return ids[u].astype(np.uint64), ids[v].astype(np.uint64), sums, counts
    if affs.dtype not in (np.float32, np.float64):
        affs = affs.astype(np.float32)  # e.g. float16: each value exactly
    keys, sums, counts = graphkernels.contact_table(
        np.ascontiguousarray(labels), np.ascontiguousarray(affs), np.int64(num_ids)
    )
    order = np.argsort(keys, kind="stable")  # timsort: runs of the near table come sorted
    keys = keys[order].astype(np.uint64)
    return keys // np.uint64(num_ids), keys % np.uint64(num_ids), sums[order], counts[order]


def cells(labels: np.ndarray, num_ids: int) -> np.ndarray:
    """A voxel (z, y, x) of each label below `num_ids`: its first in C order ((0, 0, 0) for
    labels absent), for `mean_affinity_agglomeration`'s `cells`."""
    from chunkflow.segmentation import graphkernels

    return graphkernels.first_voxels(np.ascontiguousarray(labels), np.int64(num_ids))


def plane_contacts(upper: np.ndarray, lower: np.ndarray, affs: np.ndarray):
    """Contact statistics across a face: `upper[i]` touches `lower[i]` with affinity `affs[i]`
    (the planes on the two sides of a chunk face, same shape). Returns u, v (uint64, u < v),
    affinity sums (float64) and counts (int64), sorted by (u, v)."""
    touching = (upper != lower) & (upper != 0) & (lower != 0)
    u, v, w = upper[touching], lower[touching], affs[touching].astype(np.float64)
    ids, inverse = np.unique(np.concatenate([u, v]), return_inverse=True)
    num = np.uint64(len(ids))
    lu, lv = inverse[: len(u)].astype(np.uint64), inverse[len(u) :].astype(np.uint64)
    keys, inverse = np.unique(np.minimum(lu, lv) * num + np.maximum(lu, lv), return_inverse=True)
    sums = np.bincount(inverse, weights=w, minlength=len(keys))
    counts = np.bincount(inverse, minlength=len(keys)).astype(np.int64)
    return ids[keys // num].astype(np.uint64), ids[keys % num].astype(np.uint64), sums, counts


# ---------------------------------------------------------------------------------------------
# compiled graph algorithms (numba)


def fixed_point(sums, counts):
    """Sums and counts as integers in units of 2**-k (k <= 24), every total below 2**53.

    Sums of such integers are exact, whatever order merges add them in, and so are their
    quotients' comparisons (one rounding each); a merged edge's mean lies between those of
    the two it joins. That makes a region graph's segments independent of the merge order
    (see graphkernels.agglomerate), at a resolution of 2**-24 per contact sum.
    """
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    total = max(int(counts.sum()), int(np.ceil(np.abs(sums).sum())), 1)
    k = min(24, 52 - total.bit_length())
    if k < 0:
        raise ChunkflowError(f"{total} contacts are too many for one region graph")
    return np.rint(np.ldexp(sums, k)).astype(np.int64), counts << k


def _blocks(cells, num_nodes: int, block_size: int):
    """The merge's blocks: the cells as int32, the block sizes below the cells' extent
    (`block_size`, doubling) and the number of the smallest blocks. No cells: no blocks."""
    if cells is None:
        return np.zeros((0, 3), dtype=np.int32), np.zeros(0, dtype=np.int64), 1
    cells = np.asarray(cells)
    if cells.shape != (num_nodes, 3) or (cells < 0).any() or cells.max(initial=0) >= 2**31:
        raise ChunkflowError(f"cells: expected ({num_nodes}, 3) voxel coordinates")
    extent = cells.max(axis=0) + 1 if num_nodes else np.ones(3, dtype=np.int64)
    sizes = []
    while block_size << len(sizes) < extent.max():
        sizes.append(block_size << len(sizes))
    num_blocks = int(np.prod(-(-extent // block_size))) if sizes else 1
    return cells.astype(np.int32, copy=False), np.array(sizes, dtype=np.int64), num_blocks


def _work_arrays(num_nodes: int, num_edges: int, num_blocks: int, edge_t):
    """graphkernels.agglomerate's work space, in the order of its arguments."""
    capacity = 16  # the edge table's: a power of two, at least twice the edges
    while capacity < 2 * num_edges + 16:
        capacity *= 2
    return (
        np.empty(num_edges, dtype=np.float64),  # score
        np.ones(num_edges, dtype=np.bool_),  # alive
        np.zeros(num_edges, dtype=np.bool_),  # queued
        np.zeros(num_nodes, dtype=np.int32),  # block
        np.zeros(num_nodes, dtype=np.bool_),  # frozen
        np.empty(num_blocks + 1, dtype=np.int64),  # start
        np.empty(2 * num_edges, dtype=edge_t),  # members
        np.full(num_nodes, -1, dtype=edge_t),  # head_e
        np.zeros(num_nodes, dtype=np.int8),  # head_s
        np.full(num_nodes, -1, dtype=edge_t),  # tail_e
        np.zeros(num_nodes, dtype=np.int8),  # tail_s
        np.zeros(num_nodes, dtype=np.int64),  # length
        np.full((num_edges, 2), -1, dtype=edge_t),  # next_e
        np.zeros((num_edges, 2), dtype=np.int8),  # next_s
        np.empty(capacity, dtype=np.int64),  # keys
        np.empty(capacity, dtype=edge_t),  # values
        np.empty(num_edges, dtype=np.float64),  # heap_s
        np.empty(num_edges, dtype=edge_t),  # heap_e
    )


def mean_affinity_agglomeration(
    u,
    v,
    sums,
    counts,
    num_nodes: int,
    threshold: float,
    forced=None,
    overwrite: bool = False,
    cells=None,
    block_size: int = 32,
):
    """Merge a region adjacency graph with waterz's mean-affinity rule up to `threshold`.

    Args:
        u, v: node ids (0 .. num_nodes - 1) of each edge; each pair at most once, no loops.
        sums, counts: sum and number of the affinities across each contact (fixed_point
            rounds the sums to 2**-24).
        threshold: edges merge while 1 - mean affinity is below it.
        forced: edges that merge first, whatever their statistics (count 0 allowed).
        overwrite: u, v and forced may be used as work space (saves their copies; the sums
            and counts become fixed-point copies either way).
        cells: a voxel (z, y, x) of each node. The merge then runs in blocks of `block_size`
            voxels and doubling sizes, each touching only its part of the graph's memory; the
            segments are the same.

    Returns:
        For every node, its segment: ids 1, 2, ... in the order segments first appear along
        the node ids (uint64).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ChunkflowError(f"threshold {threshold} is out of range: expected [0, 1]")
    num_edges = len(u)
    node_t = np.int32 if num_nodes < 2**31 else np.int64
    edge_t = np.int32 if num_edges < 2**31 else np.int64

    def work(array, dtype):
        array = np.asarray(array)
        return array if overwrite and array.dtype == dtype else array.astype(dtype)

    eu, ev = work(u, node_t), work(v, node_t)
    esum, ecount = fixed_point(sums, counts)
    forced = np.zeros(num_edges, dtype=np.bool_) if forced is None else work(forced, np.bool_)
    if num_edges and (((ecount <= 0) & ~forced).any() or (eu == ev).any()):
        raise ChunkflowError(
            "every edge needs two distinct nodes and at least one affinity (unless forced)"
        )
    cells, sizes, num_blocks = _blocks(cells, num_nodes, block_size)
    parent = np.arange(num_nodes, dtype=node_t)
    from chunkflow.segmentation import graphkernels

    graphkernels.agglomerate(
        eu, ev, esum, ecount, forced, np.float64(threshold), parent, cells, sizes,
        *_work_arrays(num_nodes, num_edges, num_blocks, edge_t),
    )  # fmt: skip
    return graphkernels.first_come_labels(parent, np.uint64(1))


class UnionFind:
    """Equivalences over nodes 0 .. n - 1, fed pair by pair in batches (memory: the nodes)."""

    def __init__(self, num_nodes: int):
        from chunkflow.segmentation import graphkernels

        self._kernels = graphkernels
        self.parent = np.arange(num_nodes, dtype=np.int64)

    def union(self, u, v) -> None:
        self._kernels.union(
            self.parent, np.asarray(u, dtype=np.int64), np.asarray(v, dtype=np.int64)
        )

    def labels(self, start: int = 1) -> np.ndarray:
        """Each node's set as ids from `start`, in order of first appearance (uint64)."""
        return self._kernels.first_come_labels(self.parent, np.uint64(start))
