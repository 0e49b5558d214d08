"""The compiled kernels of chunkflow.segmentation.regiongraph (numba, cached on disk).

Importing this module imports numba (about a second); the kernels compile on their first call
in a fresh installation and load from the cache afterwards. They are module-level functions so
that numba can cache them.
"""

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True)


@jit
def find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        parent[x], x = root, parent[x]
    return root


@jit
def union(parent, u, v):
    for i in range(len(u)):
        a = find(parent, u[i])
        b = find(parent, v[i])
        if a < b:
            parent[b] = a
        elif b < a:
            parent[a] = b


@jit
def first_come_labels(parent, start):
    """Label every node by the order in which its set first appears (ids from `start`)."""
    n = len(parent)
    out = np.empty(n, dtype=np.uint64)
    new = np.zeros(n, dtype=np.uint64)
    next_id = start
    for i in range(n):
        root = find(parent, i)
        if new[root] == 0:
            new[root] = next_id
            next_id += 1
        out[i] = new[root]
    return out


# -- a min-heap of edge ids ordered by (score, edge id) --------------------------------------
@jit
def before(score, a, b):
    return score[a] < score[b] or (score[a] == score[b] and a < b)


@jit
def heap_push(heap, size, score, e):
    i = size
    heap[i] = e
    while i > 0:
        up = (i - 1) >> 1
        if before(score, heap[i], heap[up]):
            heap[i], heap[up] = heap[up], heap[i]
            i = up
        else:
            break
    return size + 1


@jit
def heap_pop(heap, size, score):
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        best = left
        if left + 1 < size and before(score, heap[left + 1], heap[left]):
            best = left + 1
        if before(score, heap[best], heap[i]):
            heap[i], heap[best] = heap[best], heap[i]
            i = best
        else:
            break
    return size


# -- an open-addressing table (a, b) -> edge, for the edge between two regions ----------------
@jit
def slot(keys, key):
    mask = len(keys) - 1
    h = (key * 0x9E3779B97F4A7C15) & 0x7FFFFFFFFFFFFFFF
    i = (h >> 17) & mask
    while keys[i] != -1 and keys[i] != key:
        i = (i + 1) & mask
    return i


@jit
def pair_key(a, b, n):
    return min(a, b) * n + max(a, b)


@jit
def edge_score(esum, ecount, forced, e):
    return -1.0 if forced[e] else 1.0 - esum[e] / ecount[e]


@jit
def rebuild(keys, values, eu, ev, alive, n):
    keys[:] = -1
    used = 0
    for e in range(len(eu)):
        if alive[e]:
            key = pair_key(eu[e], ev[e], n)
            i = slot(keys, key)
            keys[i] = key
            values[i] = e
            used += 1
    return used


@jit
def link_incidence(eu, ev, head_e, head_s, tail_e, tail_s, length, next_e, next_s):
    """Each node's list of edges, linked through (edge, side) pairs: side 0 is the edge's u,
    1 its v."""
    for e in range(len(eu)):
        for side in range(2):
            node = eu[e] if side == 0 else ev[e]
            if head_e[node] == -1:
                head_e[node], head_s[node] = e, side
            else:
                next_e[tail_e[node], tail_s[node]] = e
                next_s[tail_e[node], tail_s[node]] = side
            tail_e[node], tail_s[node] = e, side
            length[node] += 1


@jit
def append_list(a, b, head_e, head_s, tail_e, tail_s, length, next_e, next_s):
    """Node b's list joins the end of node a's; b's becomes empty."""
    if head_e[b] != -1:
        if head_e[a] == -1:
            head_e[a], head_s[a] = head_e[b], head_s[b]
        else:
            next_e[tail_e[a], tail_s[a]] = head_e[b]
            next_s[tail_e[a], tail_s[a]] = head_s[b]
        tail_e[a], tail_s[a] = tail_e[b], tail_s[b]
        length[a] += length[b]
    head_e[b] = -1
    length[b] = 0


@jit
def move_edges(
    a, b, eu, ev, esum, ecount, forced, score, alive, stale, head_e, head_s, next_e, next_s,
    keys, values, n,
):  # fmt: skip
    """Give node b's live edges to node a, as waterz does when b merges into a: an edge to a
    neighbour a already has adds its statistics to the cheaper of the two, the other dies.
    Returns the number of keys added to the table."""
    added = 0
    f, side = head_e[b], head_s[b]
    while f != -1:
        nf, ns = next_e[f, side], next_s[f, side]
        if alive[f]:
            nb = ev[f] if side == 0 else eu[f]
            key = pair_key(a, nb, n)
            i = slot(keys, key)
            g = values[i] if keys[i] != -1 else -1
            if g == -1 or score[f] <= score[g]:  # f becomes the edge a - nb, with g's statistics
                if g != -1:
                    esum[f] += esum[g]
                    ecount[f] += ecount[g]
                    forced[f] |= forced[g]
                    alive[g] = False
                    stale[f] = True
                if side == 0:
                    eu[f] = a
                else:
                    ev[f] = a
                if keys[i] == -1:
                    keys[i] = key
                    added += 1
                values[i] = f
            else:  # the cheaper edge g stays, with f's statistics added
                esum[g] += esum[f]
                ecount[g] += ecount[f]
                forced[g] |= forced[f]
                alive[f] = False
                stale[g] = True
        f, side = nf, ns
    return added


@jit
def agglomerate(
    eu, ev, esum, ecount, forced, threshold, parent, score, alive, stale, head_e, head_s,
    tail_e, tail_s, length, next_e, next_s, keys, values, heap,
):  # fmt: skip
    """Mean-affinity agglomeration of a graph, as waterz's IterativeRegionMerging.

    Fills `parent`, the merge forest (a node whose parent is itself is a root). Forced
    edges score -1: they merge first, whatever their statistics. The other arrays are work
    space; eu, ev, esum, ecount and forced are overwritten.
    """
    n = np.int64(len(parent))
    lists = (head_e, head_s, tail_e, tail_s, length, next_e, next_s)
    link_incidence(eu, ev, *lists)
    used = rebuild(keys, values, eu, ev, alive, n)
    size = 0
    for e in range(len(eu)):
        score[e] = edge_score(esum, ecount, forced, e)
        size = heap_push(heap, size, score, e)
    while size > 0:
        e = heap[0]
        if score[e] >= threshold:
            break
        size = heap_pop(heap, size, score)
        if not alive[e]:
            continue
        if stale[e]:
            score[e] = edge_score(esum, ecount, forced, e)
            stale[e] = False
            size = heap_push(heap, size, score, e)
            continue
        a, b = eu[e], ev[e]
        if length[a] < length[b]:  # walk the shorter incidence list
            a, b = b, a
        parent[b] = a
        alive[e] = False
        used += move_edges(
            a, b, eu, ev, esum, ecount, forced, score, alive, stale, head_e, head_s, next_e,
            next_s, keys, values, n,
        )  # fmt: skip
        append_list(a, b, *lists)
        if 10 * used > 7 * len(keys):  # keys of merged regions pile up: drop them
            used = rebuild(keys, values, eu, ev, alive, n)
