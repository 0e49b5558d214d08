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
def rebuild(keys, values, edges, eu, ev, alive, n):
    """The table of the live edges among `edges`; returns the number of keys."""
    keys[:] = -1
    used = 0
    for e in edges:
        if alive[e]:
            key = pair_key(eu[e], ev[e], n)
            i = slot(keys, key)
            keys[i] = key
            values[i] = e
            used += 1
    return used


@jit
def link_incidence(eu, ev, alive, head_e, head_s, tail_e, tail_s, length, next_e, next_s):
    """Each node's list of live edges, in edge order, linked through (edge, side) pairs: side
    0 is the edge's u, 1 its v."""
    head_e[:] = -1
    length[:] = 0
    for e in range(len(eu)):
        if not alive[e]:
            continue
        next_e[e, 0] = next_e[e, 1] = -1
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
    a, b, eu, ev, esum, ecount, forced, threshold, score, alive, head_e, head_s, tail_e, tail_s,
    length, next_e, next_s, keys, values, n, queued, heap_s, heap_e, size,
):  # fmt: skip
    """Give node b's live edges to node a, as waterz does when b merges into a: an edge to a
    neighbour a already has is joined with it; the higher of the two ids lives on with the
    sum of both statistics (its new score goes onto the heap), the other dies.
    b's list keeps only the edges that live on (dead ones are unlinked on the way, so no list
    is walked twice through an edge that died). Returns the number of keys added to the table
    and the heap's size."""
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
            if g != -1:
                keep, lose = max(f, g), min(f, g)
                esum[keep] += esum[lose]
                ecount[keep] += ecount[lose]
                forced[keep] |= forced[lose]
                alive[lose] = False
                score[keep] = edge_score(esum, ecount, forced, keep)
                queued[keep] = True
                if score[keep] < threshold:
                    size = heap_push(heap_s, heap_e, size, score[keep], keep)
            if alive[f]:  # f becomes the edge a - nb
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
    return added, size


@jit
def first_voxels(labels, num_ids):
    out = np.zeros((num_ids, 3), dtype=np.int32)
    seen = np.zeros(num_ids, dtype=np.bool_)
    for z in range(labels.shape[0]):
        for y in range(labels.shape[1]):
            for x in range(labels.shape[2]):
                label = labels[z, y, x]
                if not seen[label]:
                    seen[label] = True
                    out[label, 0], out[label, 1], out[label, 2] = z, y, x
    return out


@jit
def cell_blocks(cells, size, block):
    """Each node's block: its cell (a voxel of it, (z, y, x)) divided by `size`. Returns the
    number of blocks."""
    dims = np.zeros(3, dtype=np.int64)
    for i in range(len(cells)):
        for d in range(3):
            dims[d] = max(dims[d], cells[i, d] // size + 1)
    for i in range(len(cells)):
        block[i] = (cells[i, 0] // size * dims[1] + cells[i, 1] // size) * dims[2]
        block[i] += cells[i, 2] // size
    return dims[0] * dims[1] * dims[2]


@jit
def bucket_edges(eu, ev, alive, block, num_blocks, start, members):
    """The live edges of each block (those with an end in it), in edge order:
    members[start[k]:start[k + 1]] for block k."""
    start[: num_blocks + 1] = 0
    for e in range(len(eu)):
        if alive[e]:
            bu, bv = block[eu[e]], block[ev[e]]
            start[bu + 1] += 1
            if bv != bu:
                start[bv + 1] += 1
    for k in range(num_blocks):
        start[k + 1] += start[k]
    fill = start[:num_blocks].copy()
    for e in range(len(eu)):
        if alive[e]:
            bu, bv = block[eu[e]], block[ev[e]]
            members[fill[bu]] = e
            fill[bu] += 1
            if bv != bu:
                members[fill[bv]] = e
                fill[bv] += 1


@jit
def merge_block(
    edges, cb, block, frozen, threshold, eu, ev, esum, ecount, forced, parent, score, alive,
    queued, head_e, head_s, tail_e, tail_s, length, next_e, next_s, all_keys, values, heap_s,
    heap_e,
):  # fmt: skip
    """Merge the regions of block `cb`, cheapest edge first, as long as the cheapest edge of
    both ends is the one between them; `edges` are all live edges with an end in the block.

    The queue holds the block's edges below the threshold by (score, edge id). An edge whose
    other end lies outside the block, or is frozen, freezes its end in the block when it comes
    up: that region's cheapest edge leads out, so it waits for a larger block. The edges are
    sorted once and read in order; an edge whose score a merge changed goes onto a heap
    (`queued`), and its place in the order, or an older place on the heap, is passed over.
    Together the two give the order one heap would.
    """
    n = np.int64(len(parent))
    lists = (head_e, head_s, tail_e, tail_s, length, next_e, next_s)
    capacity = 16
    while capacity < 2 * len(edges) + 16:
        capacity *= 2
    keys = all_keys[:capacity]  # a table local to the block
    used = rebuild(keys, values, edges, eu, ev, alive, n)
    below = edges[score[edges] < threshold]
    order = below[np.argsort(score[below], kind="mergesort")]  # stable: ties by edge id
    for e in edges:
        queued[e] = False
    i, size = 0, 0
    while True:
        while i < len(order) and queued[order[i]]:  # its score changed: it is on the heap
            i += 1
        if i == len(order) and size == 0:
            break
        if size == 0 or (
            i < len(order) and before(score[order[i]], order[i], heap_s[0], heap_e[0])
        ):
            e = order[i]
            i += 1
        else:
            s, e = heap_s[0], heap_e[0]
            size = heap_pop(heap_s, heap_e, size)
            if s != score[e]:
                continue
        if not alive[e]:
            continue
        a, b = eu[e], ev[e]
        if block[a] != cb or block[b] != cb or frozen[a] or frozen[b]:
            frozen[a] |= block[a] == cb
            frozen[b] |= block[b] == cb
            continue
        if length[a] < length[b]:  # walk the shorter incidence list
            a, b = b, a
        # b's edges may add as many keys as it has: first make room (dropping the keys of
        # merged regions, then growing the table)
        grow = False
        while 10 * (used + length[b]) > 7 * len(keys) and len(keys) < len(all_keys):
            keys = all_keys[: 2 * len(keys)] if grow else keys
            used = rebuild(keys, values, edges, eu, ev, alive, n)
            grow = True
        parent[b] = a
        alive[e] = False
        added, size = move_edges(
            a, b, eu, ev, esum, ecount, forced, threshold, score, alive, head_e, head_s, tail_e,
            tail_s, length, next_e, next_s, keys, values, n, queued, heap_s, heap_e, size,
        )  # fmt: skip
        used += added
        append_list(a, b, *lists)
    for e in edges:
        frozen[eu[e]] = False
        frozen[ev[e]] = False


@jit
def agglomerate(
    eu, ev, esum, ecount, forced, threshold, parent, cells, sizes, score, alive, queued, block,
    frozen, start, members, head_e, head_s, tail_e, tail_s, length, next_e, next_s, keys,
    values, heap_s, heap_e,
):  # fmt: skip
    """Mean-affinity agglomeration of a graph, as waterz's IterativeRegionMerging.

    Fills `parent`, the merge forest (a node whose parent is itself is a root). Forced
    edges score -1: they merge first, whatever their statistics. The other arrays are work
    space; eu, ev, esum, ecount and forced are overwritten.

    The result is that of contracting the cheapest edge of the whole graph (by score, then
    id), again and again. With `cells` (a voxel of each node), it is reached block by block:
    for each block size in `sizes`, then for the whole graph, every block merges pairs of
    regions whose cheapest edges are the one between them. Mean affinity is a reducible
    linkage: an edge joined from two has a (score, id) no lower than the cheaper of them (its
    mean lies between theirs, exactly so with fixed-point sums, and it keeps the higher id).
    Such a pair then stays each other's cheapest until it merges, whatever merges elsewhere,
    so merging it early gives the segments the whole-graph order gives, and merging in blocks
    touches memory a block at a time.
    """
    lists = (head_e, head_s, tail_e, tail_s, length, next_e, next_s)
    for e in range(len(eu)):
        score[e] = edge_score(esum, ecount, forced, e)
    for level in range(len(sizes) + 1):
        link_incidence(eu, ev, alive, *lists)  # without the edges that died
        num_blocks = 1
        if level < len(sizes):
            num_blocks = cell_blocks(cells, sizes[level], block)
        else:
            block[:] = 0
        bucket_edges(eu, ev, alive, block, num_blocks, start, members)
        for k in range(num_blocks):
            if start[k + 1] > start[k]:
                merge_block(
                    members[start[k] : start[k + 1]], k, block, frozen, threshold, eu, ev,
                    esum, ecount, forced, parent, score, alive, queued, *lists, keys, values,
                    heap_s, heap_e,
                )  # fmt: skip


# -- contact statistics: one pass over the voxels into tables of label pairs ------------------
# A pair (key min * n + max) goes into the near table, ordered by the smaller label: its probe
# starts at that label's share of the slots and looks at most WINDOW slots on. Watershed ids
# follow the scan, so the pairs that a stretch of voxels touches sit close together in memory,
# and the near table holds its keys almost sorted. A pair whose window is full goes to the far
# table, a plain hash table that grows (a label with very many neighbours, or more pairs than
# the near table has room for). Windows only fill up, so a pair is always found in the table it
# went to first.
WINDOW = 32


@jit
def near_slot(keys, lo, key, n):
    """The near table's slot of `key`, or the empty one where it goes; -1: the window is full."""
    i = int(lo * ((len(keys) - WINDOW) / n))
    for j in range(i, i + WINDOW):
        if keys[j] == key or keys[j] == -1:
            return j
    return -1


@jit
def grown_far(keys, sums, counts):
    """The far table in twice the room."""
    new_keys = np.full(2 * len(keys), -1, dtype=np.int64)
    new_sums = np.zeros(2 * len(keys), dtype=np.float64)
    new_counts = np.zeros(2 * len(keys), dtype=np.int64)
    for i in range(len(keys)):
        if keys[i] != -1:
            j = slot(new_keys, keys[i])
            new_keys[j], new_sums[j], new_counts[j] = keys[i], sums[i], counts[i]
    return new_keys, new_sums, new_counts


@jit
def fill_contacts(labels, affs, n, near, far, used, at):
    """Add the voxel edges from position `at` (axis, z, y, x) on to the tables (keys, sums,
    counts each). Returns the number of keys in the far table and, when it needs room first,
    the position to go on from (else axis 3)."""
    depth, height, width = labels.shape
    c0, z0, y0, x0 = at
    for c in range(c0, 3):
        dz, dy, dx = int(c == 0), int(c == 1), int(c == 2)
        last_key, last, table = np.int64(-1), 0, near
        for z in range(z0 if c == c0 else dz, depth):
            for y in range(y0 if (c, z) == (c0, z0) else dy, height):
                for x in range(x0 if (c, z, y) == (c0, z0, y0) else dx, width):
                    a = np.int64(labels[z, y, x])
                    b = np.int64(labels[z - dz, y - dy, x - dx])
                    if a == b or a == 0 or b == 0:
                        continue
                    lo = min(a, b)
                    key = lo * n + max(a, b)
                    if key != last_key:
                        table, last = near, near_slot(near[0], lo, key, n)
                        if last < 0:
                            if 2 * (used + 1) > len(far[0]):
                                return used, (c, z, y, x)
                            table, last = far, slot(far[0], key)
                            if far[0][last] == -1:
                                used += 1
                        table[0][last] = key
                        last_key = key
                    table[1][last] += affs[c, z, y, x]
                    table[2][last] += 1
    return used, (3, 0, 0, 0)


@jit
def contact_table(labels, affs, n):
    """For each pair of touching labels (key min * n + max; label 0 takes no part; every label
    below n): the sum of the affinities across the contact, added axis by axis (0, 1, 2) in
    voxel order, and the number of voxel edges. Returns keys (almost sorted), sums and counts."""
    room = max(WINDOW, min(8 * n, labels.size))
    near = (
        np.full(room + WINDOW, -1, dtype=np.int64),
        np.zeros(room + WINDOW, dtype=np.float64),
        np.zeros(room + WINDOW, dtype=np.int64),
    )
    far = (
        np.full(1 << 10, -1, dtype=np.int64),
        np.zeros(1 << 10, dtype=np.float64),
        np.zeros(1 << 10, dtype=np.int64),
    )
    used, at = fill_contacts(labels, affs, n, near, far, 0, (0, 1, 0, 0))
    while at[0] < 3:
        far = grown_far(*far)
        used, at = fill_contacts(labels, affs, n, near, far, used, at)
    kept = [np.flatnonzero(table[0] != -1) for table in (near, far)]
    return (
        np.concatenate((near[0][kept[0]], far[0][kept[1]])),
        np.concatenate((near[1][kept[0]], far[1][kept[1]])),
        np.concatenate((near[2][kept[0]], far[2][kept[1]])),
    )
