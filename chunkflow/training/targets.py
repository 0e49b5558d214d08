"""Training targets from a label volume: affinities, grown boundaries and balanced loss weights.

Affinity convention (the waterz one, see `chunkflow.segmentation.agglomerate`): for offsets
n_0, n_1, ... (z, y, x), channel c of voxel p is 1 when p and p - n_c carry the same nonzero
label, else 0. With the default `NEAREST` neighborhood channel 0 links p with the previous z
voxel, channel 1 with the previous y voxel and channel 2 with the previous x voxel, which is
what `agglomerate` reads. Gunpowder writes the same neighborhood with negated offsets
(``[[-1, 0, 0], [0, -1, 0], [0, 0, -1]]`` links p and p + n).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from chunkflow.chunk import Chunk, LayerType, check_same_grid
from chunkflow.errors import ChunkflowError

__all__ = ["NEAREST", "add_affinities", "grow_boundary", "balance_labels"]

NEAREST = ((1, 0, 0), (0, 1, 0), (0, 0, 1))


def _label_array(labels: Chunk, what: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 3:
        raise ChunkflowError(f"{what} needs a 3D label chunk (z, y, x), got shape {array.shape}")
    if array.dtype.kind not in "iub":
        raise ChunkflowError(f"{what} needs integer labels, not {array.dtype}")
    return array


def check_neighborhood(neighborhood) -> list[tuple[int, int, int]]:
    offsets = []
    for offset in neighborhood:
        offset = tuple(offset)
        if len(offset) != 3 or any(int(v) != v for v in offset):
            raise ChunkflowError(f"a neighborhood offset needs three integers (z, y, x): {offset}")
        offset = tuple(int(v) for v in offset)
        if offset == (0, 0, 0):
            raise ChunkflowError("the neighborhood offset (0, 0, 0) links a voxel with itself")
        offsets.append(offset)
    if not offsets:
        raise ChunkflowError("the affinity neighborhood is empty")
    return offsets


def _pair_slices(offset: Sequence[int], shape: Sequence[int]):
    """Slices selecting the voxels p, and p - offset, over all p with p - offset inside."""
    here, there = [], []
    for n, size in zip(offset, shape):
        if abs(n) >= size:
            return None
        here.append(slice(n, size) if n >= 0 else slice(0, size + n))
        there.append(slice(0, size - n) if n >= 0 else slice(-n, size))
    return tuple(here), tuple(there)


def add_affinities(
    labels: Chunk,
    neighborhood: Sequence[Sequence[int]] = NEAREST,
    labels_mask: Chunk | None = None,
) -> tuple[Chunk, Chunk]:
    """Affinities and their mask, float32 (C, z, y, x), from a label chunk.

    Channel c of voxel p is 1 where labels[p] == labels[p - n_c] != 0. The mask is 1 where
    p - n_c lies inside the chunk (and, given `labels_mask`, where the mask is nonzero at both
    p and p - n_c), else 0. Offsets may be long-range or negative.
    """
    array = _label_array(labels, "add-affinities")
    offsets = check_neighborhood(neighborhood)
    known = None
    if labels_mask is not None:
        check_same_grid(("labels mask", labels_mask), ("labels", labels))
        if np.ndim(labels_mask) != 3:
            raise ChunkflowError(
                f"the labels mask has shape {labels_mask.shape}; expected 3D (z, y, x)"
            )
        known = np.asarray(labels_mask) != 0
    shape = (len(offsets), *array.shape)
    affs = np.zeros(shape, np.float32)
    mask = np.zeros(shape, np.float32)
    nonzero = array != 0
    for c, offset in enumerate(offsets):
        pair = _pair_slices(offset, array.shape)
        if pair is None:
            continue
        here, there = pair
        np.logical_and(
            array[here] == array[there], nonzero[here], out=affs[c][here], casting="unsafe"
        )
        if known is None:
            mask[c][here] = 1
        else:
            np.logical_and(known[here], known[there], out=mask[c][here], casting="unsafe")
    return (
        Chunk(affs, labels.voxel_offset, labels.voxel_size, LayerType.AFFINITY_MAP),
        Chunk(mask, labels.voxel_offset, labels.voxel_size, LayerType.PROBABILITY_MAP),
    )


def grow_boundary(labels: Chunk, steps: int = 1, only_xy: bool = False) -> Chunk:
    """Set to 0 every voxel within `steps` voxels of a boundary between two different labels.

    Gunpowder's GrowBoundary semantics: a voxel keeps its label only if every voxel within
    city-block distance `steps` (6-connected erosion iterated `steps` times) has the same
    label; label 0 counts as a label, so background grows into objects too. Outside the chunk
    counts as the same label (no boundary grows from the chunk border). With `only_xy` the
    distance is measured within each z section. Implemented without a loop over labels: a
    voxel with a differing 6-neighbour is a boundary voxel, and the boundary is dilated by
    `steps - 1`; this is the same set. The dtype is kept; the result is a segmentation whatever
    the layer type of `labels` (uint8 labels read without one are typed as an image).
    """
    array = _label_array(labels, "grow-boundary")
    if steps < 0:
        raise ChunkflowError(f"grow-boundary needs steps >= 0, got {steps}")
    out = array.copy()
    if steps == 0:
        return labels.with_array(out, LayerType.SEGMENTATION)
    boundary = np.zeros(array.shape, bool)
    for axis in (1, 2) if only_xy else (0, 1, 2):
        lower = tuple(slice(None, -1) if a == axis else slice(None) for a in range(3))
        upper = tuple(slice(1, None) if a == axis else slice(None) for a in range(3))
        differs = array[lower] != array[upper]
        boundary[lower] |= differs
        boundary[upper] |= differs
    if steps > 1:
        structure = ndimage.generate_binary_structure(3, 1)
        if only_xy:
            structure[0] = structure[2] = False
        boundary = ndimage.binary_dilation(boundary, structure, iterations=steps - 1)
    out[boundary] = 0
    return labels.with_array(out, LayerType.SEGMENTATION)


def balance_labels(
    labels: Chunk,
    mask: Chunk | None = None,
    clip: tuple[float, float] = (0.05, 0.95),
) -> Chunk:
    """Per-channel loss weights (float32) giving positives and negatives half the weight each.

    Positives are labels > 0.5. Per channel, f is the fraction of positives among the masked-in
    voxels, clipped to `clip`; positives weigh 0.5 / f and negatives 0.5 / (1 - f), so both
    classes sum to half the masked-in voxel count (unless clipped). The mask multiplies the
    weights (0 leaves a voxel out); it has the labels' shape or their spatial shape. A 3D chunk
    is one channel.
    """
    array = np.asarray(labels)
    low, high = clip
    if not 0.0 < low <= high < 1.0:
        raise ChunkflowError(f"balance-labels clip must satisfy 0 < low <= high < 1, got {clip}")
    weights = None
    if mask is not None:
        check_same_grid(("mask", mask), ("labels", labels))
        if np.shape(mask) not in (array.shape, array.shape[-3:]):
            raise ChunkflowError(
                f"the mask {mask.bbox} (shape {mask.shape}) does not fit the labels "
                f"{labels.bbox} (shape {array.shape})"
            )
        weights = np.broadcast_to(np.asarray(mask, np.float32), array.shape)
    channels = array.reshape((-1, *array.shape[-3:]))
    if weights is not None:
        weights = weights.reshape(channels.shape)
    out = np.empty(channels.shape, np.float32)
    for c, channel in enumerate(channels):
        positive = channel > 0.5
        if weights is None:
            total, count = float(positive.size), float(np.count_nonzero(positive))
        else:
            weight = weights[c]
            total = float(weight.sum(dtype=np.float64))
            count = float(np.add.reduce(weight * positive, axis=None, dtype=np.float64))
        fraction = min(max(count / total if total > 0 else 0.0, low), high)
        w_pos, w_neg = 0.5 / fraction, 0.5 / (1.0 - fraction)
        np.multiply(positive, np.float32(w_pos - w_neg), out=out[c])
        out[c] += np.float32(w_neg)
        if weights is not None:
            out[c] *= weight
    return Chunk(
        out.reshape(array.shape),
        labels.voxel_offset,
        labels.voxel_size,
        LayerType.PROBABILITY_MAP,
    )
