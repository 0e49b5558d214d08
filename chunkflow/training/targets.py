"""Training targets from a label volume: affinities, grown boundaries and balanced loss weights.

Affinity convention (the waterz one, see `chunkflow.segmentation.agglomerate`): for offsets
n_0, n_1, ... (z, y, x), channel c of voxel p is 1 when p and p - n_c carry the same nonzero
label, else 0. With the default `NEAREST` neighborhood channel 0 links p with the previous z
voxel, channel 1 with the previous y voxel and channel 2 with the previous x voxel, which is
what `agglomerate` reads. Gunpowder writes the same neighborhood with negated offsets
(``[[-1, 0, 0], [0, -1, 0], [0, 0, -1]]`` links p and p + n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from chunkflow.chunk import Chunk, LayerType, check_same_grid
from chunkflow.errors import ChunkflowError

__all__ = [
    "NEAREST",
    "TARGET_KINDS",
    "LOSSES",
    "Target",
    "add_affinities",
    "grow_boundary",
    "balance_labels",
    "boundary_mask",
    "foreground_mask",
    "signed_distance",
    "local_shape_descriptors",
    "neighborhood_from",
]

NEAREST = ((1, 0, 0), (0, 1, 0), (0, 0, 1))

#: Target kinds `train` computes from labels, with the loss each gets unless told otherwise.
TARGET_KINDS = {
    "affinities": "balanced-bce",
    "boundary": "balanced-bce",
    "foreground": "balanced-bce",
    "distance": "mse",
    "lsd": "mse",
}
#: Binary targets: the ones a balanced loss can balance (positives are values > 0.5).
BINARY_KINDS = ("affinities", "boundary", "foreground")
#: Loss names; "model" is the `loss` of the model file. Balanced losses weigh positives and
#: negatives half each (`balance_labels`), the others weigh every known voxel alike.
LOSSES = ("bce", "balanced-bce", "mse", "balanced-mse", "l1", "model")
LOSS_ALIASES = {"weighted-bce": "balanced-bce", "weighted-mse": "balanced-mse"}
#: Sign conventions of a neighbourhood offset n: chunkflow links p and p - n (waterz), gunpowder
#: links p and p + n.
NEIGHBORHOOD_SIGNS = ("chunkflow", "gunpowder")


def neighborhood_from(offsets, sign: str = "chunkflow") -> tuple[tuple[int, int, int], ...]:
    """Offsets in chunkflow's convention (channel c links p and p - n_c) from offsets written
    in `sign`'s convention: gunpowder's AddAffinities links p and p + n, so they are negated."""
    if sign not in NEIGHBORHOOD_SIGNS:
        raise ChunkflowError(
            f"neighborhood sign {sign!r}: expected one of {', '.join(NEIGHBORHOOD_SIGNS)}"
        )
    offsets = check_neighborhood(offsets)
    if sign == "gunpowder":
        offsets = [tuple(-v for v in offset) for offset in offsets]
    return tuple(offsets)


def loss_name(name: str) -> str:
    """The canonical name of a loss (aliases resolved), or a clear error."""
    name = LOSS_ALIASES.get(name, name)
    if name not in LOSSES:
        names = ", ".join([*LOSSES, *LOSS_ALIASES])
        raise ChunkflowError(f"unknown loss {name!r}: expected one of {names}")
    return name


@dataclass(frozen=True)
class Target:
    """One training target: what `kind` computes from the labels, the model output it is
    compared with (`output`, default: the kind) and the loss (default per kind).

    Parameters of the kinds: `neighborhood` (affinities, chunkflow's sign), `width` and
    `only_xy` (boundary), `scale` (distance: tanh(d / scale) when > 0), `sigma` (lsd, world
    units z y x).
    """

    kind: str
    output: str = ""
    loss: str = ""
    neighborhood: tuple = NEAREST
    width: int = 1
    only_xy: bool = False
    scale: float = 0.0
    sigma: tuple = (80.0, 80.0, 80.0)

    def __post_init__(self):
        if self.kind not in TARGET_KINDS:
            raise ChunkflowError(
                f"unknown target {self.kind!r}: expected one of {', '.join(TARGET_KINDS)}"
            )
        object.__setattr__(self, "output", self.output or self.kind)
        loss = loss_name(self.loss or TARGET_KINDS[self.kind])
        if loss.startswith("balanced-") and self.kind not in BINARY_KINDS:
            raise ChunkflowError(
                f"target {self.kind}: the loss {loss} balances binary targets "
                f"({', '.join(BINARY_KINDS)}); use mse, l1 or model"
            )
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "neighborhood", tuple(check_neighborhood(self.neighborhood)))
        sigma = tuple(float(s) for s in np.broadcast_to(np.asarray(self.sigma, float), (3,)))
        object.__setattr__(self, "sigma", sigma)

    @property
    def balanced(self) -> bool:
        """Whether the loss weights are balanced (else: 1 where known)."""
        return self.loss.startswith("balanced-") or (
            self.loss == "model" and self.kind in BINARY_KINDS
        )

    def channels(self, dims: int = 3) -> int:
        if self.kind == "affinities":
            return len(self.neighborhood)
        if self.kind == "lsd":
            return 10 if dims == 3 else 6
        return 1

    def context(self, voxel_size=(1, 1, 1)) -> tuple[int, int, int]:
        """Voxels around an output voxel that its target value depends on (z, y, x); the
        distance depends on the whole object, this is the part of it that it reports."""
        if self.kind == "affinities":
            return tuple(int(v) for v in np.abs(np.array(self.neighborhood)).max(0))
        if self.kind == "boundary":
            return (0 if self.only_xy else self.width, self.width, self.width)
        if self.kind == "lsd":
            return tuple(int(math.ceil(3 * s / v)) for s, v in zip(self.sigma, voxel_size))
        return (0, 0, 0)

    def compute(
        self, labels: Chunk, labels_mask: Chunk | None = None, dims: int = 3
    ) -> tuple[Chunk, Chunk]:
        """(target, known): float32 (C, z, y, x) and where the target is known (1 or C
        channels, 0 where a labels mask is 0; lsd: also 0 in the background, as gunpowder's
        AddLocalShapeDescriptor)."""
        if self.kind == "affinities":
            return add_affinities(labels, self.neighborhood, labels_mask)
        known = _known(labels, labels_mask)
        if self.kind == "boundary":
            target = boundary_mask(labels, self.width, self.only_xy)
        elif self.kind == "foreground":
            target = foreground_mask(labels)
        elif self.kind == "distance":
            target = signed_distance(labels, self.scale)
        else:
            target = local_shape_descriptors(labels, self.sigma, dims)
            known = known * (np.asarray(labels) != 0)[None]
        return target, _float_chunk(known, labels)


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


# more targets ---------------------------------------------------------------------------------
def _float_chunk(array: np.ndarray, like: Chunk) -> Chunk:
    return Chunk(array, like.voxel_offset, like.voxel_size, LayerType.PROBABILITY_MAP)


def _known(labels: Chunk, labels_mask: Chunk | None) -> np.ndarray:
    """float32 (1, z, y, x): 1 where the labels are known."""
    if labels_mask is None:
        return np.ones((1, *labels.shape[-3:]), np.float32)
    check_same_grid(("labels mask", labels_mask), ("labels", labels))
    return (np.asarray(labels_mask) != 0).astype(np.float32).reshape(1, *labels.shape[-3:])


def boundary_mask(labels: Chunk, width: int = 1, only_xy: bool = False) -> Chunk:
    """float32 (1, z, y, x): 1 within `width` voxels of a contact between two different labels.

    A voxel with a 6-neighbour of another label (0 included) is on the boundary, on both sides
    of the contact; the set is grown by `width - 1` voxels (city-block, within z sections with
    `only_xy`). This is where gunpowder's GrowBoundary(steps=width) sets labels to 0 when label
    0 is counted as an object of its own; the chunk border is no boundary.
    """
    array = _label_array(labels, "boundary")
    if width < 1:
        raise ChunkflowError(f"the boundary width must be >= 1 voxel, got {width}")
    # shifting ids by one makes 0 an object: grow_boundary then zeroes exactly the boundary
    shifted = labels.with_array(array.astype(np.int64) + 1, LayerType.SEGMENTATION)
    grown = np.asarray(grow_boundary(shifted, width, only_xy))
    return _float_chunk((grown == 0).astype(np.float32)[None], labels)


def foreground_mask(labels: Chunk) -> Chunk:
    """float32 (1, z, y, x): 1 where the label is nonzero."""
    array = _label_array(labels, "foreground")
    return _float_chunk((array != 0).astype(np.float32)[None], labels)


def signed_distance(labels: Chunk, scale: float = 0.0) -> Chunk:
    """float32 (1, z, y, x): signed Euclidean distance to the nearest object boundary.

    Inside an object (label != 0) the distance, in world units (the chunk's voxel size), to the
    nearest voxel of another label; in the background minus the distance to the nearest object
    voxel. Both sides count the distance between voxel centres, so a voxel touching another
    label is at one voxel's length. With `scale` > 0 the result is tanh(distance / scale), in
    (-1, 1). The chunk border is no boundary.
    """
    import edt

    array = _label_array(labels, "distance")
    if scale < 0:
        raise ChunkflowError(f"the distance scale must be >= 0, got {scale}")
    anisotropy = tuple(float(v) for v in labels.voxel_size)
    ids = np.ascontiguousarray(array)
    if ids.dtype == np.bool_:
        ids = ids.astype(np.uint8)
    inside = edt.edt(ids, anisotropy=anisotropy, black_border=False)
    background = ids == 0
    if background.any() and not background.all():
        outside = edt.edt(background, anisotropy=anisotropy, black_border=False)
        inside[background] = -outside[background]
    distance = inside.astype(np.float32)
    if scale > 0:
        distance = np.tanh(distance / np.float32(scale))
    return _float_chunk(distance[None], labels)


def local_shape_descriptors(labels: Chunk, sigma, dims: int = 3) -> Chunk:
    """float32 local shape descriptors (Sheridan et al. 2022), the `lsds` package's formula.

    For each object and each voxel p of it, a Gaussian window of standard deviation `sigma`
    (world units, z y x) about p weighs the object's voxels: the channels are the offset of
    their weighted mean from p (3, scaled by 0.5 / sigma and shifted by 0.5), their variances
    (3, divided by sigma**2), Pearson correlations zy, zx, yx (3, scaled by 0.5, shifted by
    0.5) and the weighted voxel count (1): 10 channels, clipped to [0, 1], 0 in the background.
    With `dims` 2 each z section is one 2D image: 6 channels (2 offsets, 2 variances, 1
    correlation, the count) over (y, x). The Gaussian is truncated at 3 sigma and the outside
    of the chunk counts as another object (gaussian_filter with mode 'constant').
    """
    array = _label_array(labels, "lsd")
    sigma = tuple(float(s) for s in np.broadcast_to(np.asarray(sigma, float), (3,)))
    if min(sigma) <= 0:
        raise ChunkflowError(f"the LSD sigma must be positive, got {sigma}")
    voxel_size = tuple(float(v) for v in labels.voxel_size)
    if dims == 3:
        out = _lsd(array, sigma, voxel_size)
    elif dims == 2:
        sections = [_lsd(section, sigma[1:], voxel_size[1:]) for section in array]
        out = np.stack(sections, axis=1) if sections else np.zeros((6, *array.shape), np.float32)
    else:
        raise ChunkflowError(f"local shape descriptors are 2D or 3D, not {dims}D")
    return _float_chunk(out, labels)


def _lsd(array: np.ndarray, sigma, voxel_size) -> np.ndarray:
    """LSDs of a 2D or 3D label array; each object is computed in its own bounding box (the
    Gaussian of a mask that is 0 outside the box only needs the box)."""
    dims = array.ndim
    channels = 10 if dims == 3 else 6
    out = np.zeros((channels, *array.shape), np.float32)
    sigma_voxels = tuple(s / v for s, v in zip(sigma, voxel_size))
    pairs = [(0, 1), (0, 2), (1, 2)] if dims == 3 else [(0, 1)]
    ids, inverse = np.unique(array, return_inverse=True)
    dense = inverse.reshape(array.shape) + (0 if ids[0] == 0 else 1)  # 0 stays background
    for index, box in enumerate(ndimage.find_objects(dense), start=1):
        if box is None:
            continue
        inside = dense[box] == index
        mask = inside.astype(np.float32)
        shape = mask.shape
        coords = [
            (np.arange(shape[d], dtype=np.float32) * np.float32(voxel_size[d])).reshape(
                [-1 if a == d else 1 for a in range(dims)]
            )
            for d in range(dims)
        ]

        def aggregate(values):
            return ndimage.gaussian_filter(
                values, sigma=sigma_voxels, mode="constant", cval=0.0, truncate=3.0
            )

        count = aggregate(mask)
        size = count.copy()
        count[count == 0] = 1
        masked = [mask * c for c in coords]
        mean = [aggregate(m) / count for m in masked]
        offsets = [mean[d] - coords[d] for d in range(dims)]
        variance = [aggregate(masked[d] * coords[d]) / count - mean[d] ** 2 for d in range(dims)]
        covariance = [
            aggregate(masked[i] * coords[j]) / count - mean[i] * mean[j] for i, j in pairs
        ]
        for v in variance:
            v[v < 1e-3] = 1e-3
        pearson = [c / np.sqrt(variance[i] * variance[j]) for c, (i, j) in zip(covariance, pairs)]
        stats = [
            *(o / np.float32(s) * 0.5 + 0.5 for o, s in zip(offsets, sigma)),
            *(v / np.float32(s**2) for v, s in zip(variance, sigma)),
            *(p * 0.5 + 0.5 for p in pearson),
            size,
        ]
        region = out[(slice(None), *box)]
        for c, stat in enumerate(stats):
            region[c][inside] = stat[inside]
    np.clip(out, 0.0, 1.0, out=out)
    return out
