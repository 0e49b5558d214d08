"""The watershed of an affinity map: waterz's algorithm (zwatershed's steepest ascent), compiled
with numba, giving waterz's fragments voxel for voxel.

waterz builds its region graph as it runs the watershed, which costs about 130 bytes per voxel
and grows in time per voxel with the chunk; here the watershed holds the fragments (8 bytes per
voxel) and a queue of voxels, and the region graph is made afterwards from contact statistics
(`chunkflow.segmentation.regiongraph.contacts`).

The algorithm, on the 6-connected voxel graph whose edge weights are the affinities:

1. every voxel points to the neighbours it shares its largest affinity with (if that is above
   `low`), and to every neighbour it shares an affinity of at least `high` with;
2. plateaus (voxels pointing at each other) are divided: from their corners, each voxel keeps
   one pointer, towards the nearest way out;
3. following the pointers, every voxel reaches a basin: each basin is one fragment, numbered
   in the order of its first voxel (z, y, x raster order); voxels without a pointer are 0.
"""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True)

HIGH_BIT = np.uint64(1 << 63)
VISITED = np.uint64(0x40)


@jit
def _pointers(affs, low, high, seg):
    """Step 1: the six direction bits (-z, -y, -x, +z, +y, +x) of every voxel."""
    nz, ny, nx = seg.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                negz = affs[0, z, y, x] if z > 0 else low
                negy = affs[1, z, y, x] if y > 0 else low
                negx = affs[2, z, y, x] if x > 0 else low
                posz = affs[0, z + 1, y, x] if z < nz - 1 else low
                posy = affs[1, z, y + 1, x] if y < ny - 1 else low
                posx = affs[2, z, y, x + 1] if x < nx - 1 else low
                m = max(negz, negy, negx, posz, posy, posx)
                bits = 0
                if m > low:
                    for d, a in enumerate((negz, negy, negx, posz, posy, posx)):
                        if a == m or a >= high:
                            bits |= 1 << d
                seg[z, y, x] = np.uint64(bits)


@jit
def _push(queue, size, value):
    if size == len(queue):
        grown = np.empty(2 * len(queue), dtype=queue.dtype)
        grown[:size] = queue
        queue = grown
    queue[size] = value
    return queue, size + 1


@jit
def _basins(seg):
    """Steps 2 and 3 on the flat view of `seg` (direction bits in, fragment ids out)."""
    nz, ny, nx = seg.shape
    flat = seg.reshape(-1)
    step = np.array([-ny * nx, -nx, -1, ny * nx, nx, 1], dtype=np.int64)
    bit = np.array([1, 2, 4, 8, 16, 32], dtype=np.uint64)
    back = np.array([8, 16, 32, 1, 2, 4], dtype=np.uint64)
    zero = np.uint64(0)
    queue = np.empty(1 << 16, dtype=np.int64)
    size = 0
    for i in range(len(flat)):  # plateau corners: pointing at a voxel that does not point back
        for d in range(6):
            if flat[i] & bit[d] and not flat[i + step[d]] & back[d]:
                flat[i] |= VISITED
                queue, size = _push(queue, size, i)
                break
    head = 0
    while head < size:  # divide the plateaus, breadth first from their corners
        i = queue[head]
        keep = zero
        for d in range(6):
            if flat[i] & bit[d]:
                j = i + step[d]
                if flat[j] & back[d]:
                    if not flat[j] & VISITED:
                        queue, size = _push(queue, size, j)
                        flat[j] |= VISITED
                else:
                    keep = bit[d]
        flat[i] = keep
        head += 1
    next_id = np.uint64(1)
    for i in range(len(flat)):  # follow the pointers to the basins
        if flat[i] == zero:
            flat[i] = HIGH_BIT
        if not flat[i] & HIGH_BIT and flat[i] != zero:
            size, head = 0, 0
            queue, size = _push(queue, size, i)
            flat[i] |= VISITED
            while head < size:
                me = queue[head]
                for d in range(6):
                    if flat[me] & bit[d]:
                        him = me + step[d]
                        if flat[him] & HIGH_BIT:
                            label = flat[him]
                            for k in range(size):
                                flat[queue[k]] = label
                            size = 0
                            break
                        elif not flat[him] & VISITED:
                            flat[him] |= VISITED
                            queue, size = _push(queue, size, him)
                head += 1
            if size:
                for k in range(size):
                    flat[queue[k]] = HIGH_BIT | next_id
                next_id += np.uint64(1)
    for i in range(len(flat)):
        flat[i] &= ~HIGH_BIT


def watershed(affs: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fragments (uint64, 0 where no affinity exceeds `low`) of a contiguous float32
    (3, z, y, x) affinity map; channel c of voxel p links p and p - e_c."""
    seg = np.empty(affs.shape[1:], dtype=np.uint64)
    _pointers(affs, np.float32(low), np.float32(high), seg)
    _basins(seg)
    return seg
