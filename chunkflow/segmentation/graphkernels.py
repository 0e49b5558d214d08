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


# -- a min-heap of (score, edge) pairs, ordered by score, then edge id -------------------------
# The pairs are stored inline (two arrays, not edge ids into the score array): a node's two
# children then sit side by side, and a sift touches one or two cache lines per level instead of
# one per comparison, which is what the merge's time went to on large graphs.
@jit
def before(s1, e1, s2, e2):
    return s1 < s2 or (s1 == s2 and e1 < e2)


@jit
def heap_push(hs, he, size, s, e):
    i = size
    while i > 0:
        up = (i - 1) >> 1
        if not before(s, e, hs[up], he[up]):
            break
        hs[i], he[i] = hs[up], he[up]
        i = up
    hs[i], he[i] = s, e
    return size + 1


@jit
def heap_pop(hs, he, size):
    size -= 1
    s, e = hs[size], he[size]
    i = 0
    while True:
        best = 2 * i + 1
        if best >= size:
            break
        if best + 1 < size and before(hs[best + 1], he[best + 1], hs[best], he[best]):
            best += 1
        if not before(hs[best], he[best], s, e):
            break
        hs[i], he[i] = hs[best], he[best]
        i = best
    hs[i], he[i] = s, e
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
    a, b, eu, ev, esum, ecount, forced, score, alive, stale, head_e, head_s, tail_e, tail_s,
    length, next_e, next_s, keys, values, n,
):  # fmt: skip
    """Give node b's live edges to node a, as waterz does when b merges into a: an edge to a
    neighbour a already has adds its statistics to the cheaper of the two, the other dies.
    b's list keeps only the edges that live on (dead ones are unlinked on the way, so no list
    is walked twice through an edge that died). Returns the number of keys added to the table."""
    added = 0
    f, side = head_e[b], head_s[b]
    head_e[b], last, last_side, count = -1, -1, 0, 0
    while f != -1:
        nf, ns = next_e[f, side], next_s[f, side]
        if alive[f]:
            nb = ev[f] if side == 0 else eu[f]
            key = pair_key(a, nb, n)
            i = slot(keys, key)
            g = values[i] if keys[i] != -1 else -1
            if g != -1 and score[g] < score[f]:  # the cheaper edge g stays, with f's statistics
                esum[g] += esum[f]
                ecount[g] += ecount[f]
                forced[g] |= forced[f]
                alive[f] = False
                stale[g] = True
            else:  # f becomes the edge a - nb, with g's statistics
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
                if last == -1:
                    head_e[b], head_s[b] = f, side
                else:
                    next_e[last, last_side], next_s[last, last_side] = f, side
                last, last_side, count = f, side, count + 1
        f, side = nf, ns
    if last != -1:
        next_e[last, last_side] = -1
    tail_e[b], tail_s[b], length[b] = last, last_side, count
    return added


@jit
def agglomerate(
    eu, ev, esum, ecount, forced, threshold, parent, score, alive, stale, head_e, head_s,
    tail_e, tail_s, length, next_e, next_s, keys, values, heap_s, heap_e,
):  # fmt: skip
    """Mean-affinity agglomeration of a graph, as waterz's IterativeRegionMerging.

    Fills `parent`, the merge forest (a node whose parent is itself is a root). Forced
    edges score -1: they merge first, whatever their statistics. The other arrays are work
    space; eu, ev, esum, ecount and forced are overwritten.

    The queue holds the edges by (score, edge id). A merge only raises the scores it changes
    (the edge that stays is the cheaper one), so an edge that starts at or above the threshold
    never merges, and the edges below it are sorted once and read in order; only edges whose
    score changed go through the heap, when they come up. Together the two give the order one
    heap of all edges would.
    """
    n = np.int64(len(parent))
    lists = (head_e, head_s, tail_e, tail_s, length, next_e, next_s)
    link_incidence(eu, ev, *lists)
    used = rebuild(keys, values, eu, ev, alive, n)
    for e in range(len(eu)):
        score[e] = edge_score(esum, ecount, forced, e)
    below = np.nonzero(score < threshold)[0]
    order = below[np.argsort(score[below], kind="mergesort")]  # stable: ties by edge id
    i, size = 0, 0
    while i < len(order) or size > 0:
        if size == 0 or (
            i < len(order) and before(score[order[i]], order[i], heap_s[0], heap_e[0])
        ):
            e = order[i]
            i += 1
        else:
            e = heap_e[0]
            size = heap_pop(heap_s, heap_e, size)
        if not alive[e]:
            continue
        if stale[e]:
            score[e] = edge_score(esum, ecount, forced, e)
            stale[e] = False
            if score[e] < threshold:
                size = heap_push(heap_s, heap_e, size, score[e], e)
            continue
        a, b = eu[e], ev[e]
        if length[a] < length[b]:  # walk the shorter incidence list
            a, b = b, a
        parent[b] = a
        alive[e] = False
        used += move_edges(
            a, b, eu, ev, esum, ecount, forced, score, alive, stale, head_e, head_s, tail_e,
            tail_s, length, next_e, next_s, keys, values, n,
        )  # fmt: skip
        append_list(a, b, *lists)
        if 10 * used > 7 * len(keys):  # keys of merged regions pile up: drop them
            used = rebuild(keys, values, eu, ev, alive, n)
